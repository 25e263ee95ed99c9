//go:build k8s

package k8stest

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/k8scluster"
	"github.com/genlbridge/genlbridge/internal/proctest"
	"github.com/genlbridge/genlbridge/internal/syncbuf"
	corev1 "k8s.io/api/core/v1"
)

// TestProbes: the DaemonSet's probes against the bridge's own endpoints.
//
//   - readiness (/readyz) as documented: with the hub down the sink is
//     disconnected, /readyz answers 503 and the kubelet takes the pod out of
//     Ready, while /healthz still answers and nothing is restarted; with the
//     hub back the pod is Ready again;
//   - liveness (/healthz): a bridge that answers nothing (SIGSTOP) fails it,
//     and the kubelet restarts the container;
//   - a connection closed for good (the hub reloaded without the bridges'
//     user: revoked credentials): the bridge exits with status 1, naming
//     the authorization error, and the kubelet restarts it (and keeps
//     restarting it, backing off, while the credentials stay revoked); with
//     the user back, a restarted container is Ready.
func TestProbes(t *testing.T) {
	c := need(t)
	h := startHub(t)
	o := newOverlay(t)
	o.subscribe = injectSub
	deploy(t, c, h, o)
	rollout(t, c)
	p := waitReadyPod(t, c, time.Minute)
	restarts := func(p *corev1.Pod) int32 {
		if len(p.Status.ContainerStatuses) == 0 {
			return -1
		}
		return p.Status.ContainerStatuses[0].RestartCount
	}

	// Readiness: the hub down, then back.
	h.kill()
	start := time.Now()
	p = waitPod(t, c, time.Minute, "the pod not Ready with the hub down", func(p *corev1.Pod) bool { return !podReady(p) })
	code, body, err := get(o, "/readyz")
	hcode, _, herr := get(o, "/healthz")
	t.Logf("hub down: the pod not Ready after %v; /readyz %d %q, /healthz %d", time.Since(start).Round(time.Millisecond), code, strings.TrimSpace(body), hcode)
	if err != nil || code != http.StatusServiceUnavailable || herr != nil || hcode != http.StatusOK {
		t.Errorf("hub down: /readyz %d (%v), /healthz %d (%v): want 503 and 200", code, err, hcode, herr)
	}
	if m, err := scrape(o); err != nil || m.Get("genlbridge_sink_connected") != 0 {
		t.Errorf("hub down: genlbridge_sink_connected %v (%v), want 0", m.Get("genlbridge_sink_connected"), err)
	}
	h.start()
	start = time.Now()
	p = waitReadyPod(t, c, time.Minute)
	t.Logf("hub back: Ready again after %v, restarts %d", time.Since(start).Round(time.Millisecond), restarts(&p))
	if restarts(&p) != 0 {
		t.Errorf("the container was restarted %d times during the hub's outage: the liveness probe must not fail for it", restarts(&p))
	}

	// Liveness: the bridge stopped (SIGSTOP) answers nothing.
	pid := containerPid(t, c, &p)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitFor(t, 2*time.Minute, "the kubelet to kill the container for its liveness probe", func() bool {
		return hasEvent(t, c, p.Name, "Killing", "failed liveness probe")
	})
	t.Logf("SIGSTOP: the kubelet kills the container for its failed liveness probe after %v", time.Since(start).Round(time.Millisecond))
	// Let it take the SIGTERM, rather than wait out the grace period.
	_ = syscall.Kill(pid, syscall.SIGCONT)
	p = waitPod(t, c, 2*time.Minute, "the container restarted and Ready", func(p *corev1.Pod) bool { return restarts(p) == 1 && podReady(p) })
	t.Logf("restarted (restart count %d) and Ready %v after SIGSTOP", restarts(&p), time.Since(start).Round(time.Millisecond))

	// Revoked credentials.
	waitMetrics(t, o, time.Minute, "connected", func(m proctest.Metrics) bool { return m.Get("genlbridge_sink_connected") == 1 })
	// Follow the container's log from before the revocation to its end (the
	// log of a container that already exited may be gone by the time it is
	// asked for: the next one fails at once and is restarted again).
	follow := c.KubectlCmd(context.Background(), "-n", namespace, "logs", "-f", p.Name)
	var lastWords syncbuf.Buffer
	follow.Stdout = &lastWords
	if err := k8scluster.Spawn(follow); err != nil {
		t.Fatal(err)
	}
	followed := make(chan error, 1)
	go func() { followed <- follow.Wait() }()
	defer func() { _ = follow.Process.Kill() }()
	waitFor(t, 30*time.Second, "the log followed", func() bool { return strings.Contains(lastWords.String(), `"joined"`) })
	h.revoke(true)
	start = time.Now()
	p = waitPod(t, c, 2*time.Minute, "the container restarted after the revocation", func(p *corev1.Pod) bool {
		if restarts(p) < 2 {
			return false
		}
		last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated
		return last != nil && last.ExitCode == 1
	})
	t.Logf("credentials revoked: the bridge exited with status 1 and the kubelet restarted it, %v after the revocation (restart count %d, %s)",
		time.Since(start).Round(time.Millisecond), restarts(&p), p.Status.ContainerStatuses[0].LastTerminationState.Terminated.Reason)
	select {
	case <-followed:
	case <-time.After(30 * time.Second):
		t.Error("kubectl logs -f did not end with the container")
	}
	prev := lastWords.String()
	var stopping map[string]any
	for _, l := range strings.Split(prev, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "stopping: a supervisor should restart genlbridge" {
			stopping = rec
		}
	}
	if stopping == nil || !strings.Contains(strings.ToLower(toString(stopping["err"])), "authorization") {
		t.Errorf("the revoked container's log names no authorization error in a 'stopping' line:\n%s", tail(prev, 20))
	} else {
		t.Logf("its last words: %v", stopping)
	}
	h.revoke(false)
	start = time.Now()
	p = waitReadyPod(t, c, 3*time.Minute)
	t.Logf("the user back: Ready again %v later (restart count %d)", time.Since(start).Round(time.Millisecond), restarts(&p))
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

// hasEvent reports whether the pod has an event of reason whose message
// contains text.
func hasEvent(t *testing.T, c *k8scluster.Cluster, pod, reason, text string) bool {
	t.Helper()
	out, err := c.Kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name="+pod, "-o", "json")
	if err != nil {
		return false
	}
	var l corev1.EventList
	if json.Unmarshal([]byte(out), &l) != nil {
		return false
	}
	for _, e := range l.Items {
		if e.Reason == reason && strings.Contains(e.Message, text) {
			return true
		}
	}
	return false
}
