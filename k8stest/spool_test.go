//go:build k8s

package k8stest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/proctest"
	corev1 "k8s.io/api/core/v1"
)

// TestSIGTERMAndTheSpool: the hub is down (SIGKILL) and a burst of events
// is in the pod's socket when the pod is deleted. The kubelet's SIGTERM
// ends the bridge well within terminationGracePeriodSeconds, with status
// 0, and its final metrics (scraped while GENLBRIDGE_SHUTDOWN_SCRAPE_WAIT
// holds the process) account for every event: read, and delivered into
// the spool or counted as lost. The spool is on the hostPath: the next pod
// finds what the deleted one spooled and, once the hub is back, forwards
// it: every event in the hub, once, in order, no loss record.
func TestSIGTERMAndTheSpool(t *testing.T) {
	c := need(t)
	h := startHub(t)
	o := newOverlay(t)
	o.subscribe = injectSub
	o.env["GENLBRIDGE_SHUTDOWN_SCRAPE_WAIT"] = "10s"
	deploy(t, c, h, o)
	rollout(t, c)
	p0 := waitReadyPod(t, c, time.Minute)
	waitMetrics(t, o, 30*time.Second, "joined", func(m proctest.Metrics) bool { return m.Sum("genlbridge_subscription_joined") == 1 })
	grace := time.Duration(*p0.Spec.TerminationGracePeriodSeconds) * time.Second
	w := watchPods(t, c)

	s := newSender(t)
	if err := s.send(1000, 5000); err != nil {
		t.Fatal(err)
	}
	waitAccounted(t, h, 1000, 30*time.Second)

	// The hub goes; a burst, then the pod at once.
	h.kill()
	const burst = 40000
	if err := s.send(burst, 0); err != nil {
		t.Fatal(err)
	}
	n := s.sent()
	before, _ := scrape(o)
	deleted := time.Now()
	kubectl(t, c, "-n", namespace, "delete", "pod", p0.Name, "--wait=false")
	final := waitMetrics(t, o, grace, "the final counts (genlbridge_stopped 1)", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_stopped") == 1
	})
	stoppedAfter := time.Since(deleted)
	var term *corev1.ContainerStateTerminated
	waitFor(t, grace+10*time.Second, "the container's terminated state", func() bool {
		var ok bool
		term, ok = w.terminated(p0.Name)
		return ok
	})
	delivered := final.Get("genlbridge_events_published_total")
	var lost float64
	for _, r := range event.Reasons {
		lost += final.Get("genlbridge_events_dropped_total", "reason="+r)
	}
	t.Logf("SIGTERM with %v of %d events read; final metrics after %v: %v read, %v delivered into the spool + %v lost; the container exited with %d (%s) %v after the deletion (grace %v)",
		before.Sum("genlbridge_events_received_total"), n, stoppedAfter.Round(time.Millisecond), final.Sum("genlbridge_events_received_total"),
		delivered, lost, term.ExitCode, term.Reason, term.FinishedAt.Sub(deleted).Round(time.Second), grace)
	if final.Sum("genlbridge_events_received_total") != float64(n) || delivered+lost != float64(n) {
		t.Errorf("final metrics: %v read, %v delivered + %v lost: want all %d read and delivered or counted", final.Sum("genlbridge_events_received_total"), delivered, lost, n)
	}
	if term.ExitCode != 0 {
		t.Errorf("the container exited with %d (%s): want 0 after SIGTERM", term.ExitCode, term.Reason)
	}
	// FinishedAt has a resolution of a second.
	if d := term.FinishedAt.Sub(deleted); d > grace-time.Second {
		t.Errorf("the container ended %v after the deletion: not within the grace period (%v)", d, grace)
	}

	// The next pod finds the spool on the hostPath, and the hub back.
	p1 := waitPod(t, c, 2*time.Minute, "the next pod running", func(p *corev1.Pod) bool {
		return p.Name != p0.Name && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	m := waitMetrics(t, o, time.Minute, "the next pod's spool holding the deleted pod's events", func(m proctest.Metrics) bool {
		return m.Get("genlbridge_spool_messages") > 0
	})
	ents, _ := os.ReadDir(o.spoolDir)
	t.Logf("%s: its spool (hostPath %s: %d entries) holds %v messages, %v bytes; the hub is down", p1.Name, filepath.Base(o.spoolDir), len(ents),
		m.Get("genlbridge_spool_messages"), m.Get("genlbridge_spool_bytes"))
	if delivered != float64(n) {
		t.Fatalf("%v of %d events delivered into the spool", delivered, n)
	}
	h.start()
	waitReadyPod(t, c, 2*time.Minute, p0.Name)
	waitAccounted(t, h, n, 2*time.Minute)
	events, losses := account(t, h, n)
	if uint64(events) != n || len(losses) != 0 {
		t.Fatalf("the hub holds %d events and losses %v of %d sent: want every one, once", events, losses, n)
	}
	recs := h.records()
	var last uint64
	for _, e := range recs.Events {
		if e.Family == injectFamily {
			if e.Seq <= last {
				t.Fatalf("seq %d after %d: out of order", e.Seq, last)
			}
			last = e.Seq
		}
	}
	t.Logf("the next pod forwarded the deleted pod's spool: all %d events in the hub once, in order, no loss record", n)
}
