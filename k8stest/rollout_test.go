//go:build k8s

package k8stest

import (
	"fmt"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/genlbridge/genlbridge/internal/proctest"
	corev1 "k8s.io/api/core/v1"
)

// TestRolloutWhileEventsFlow: module-shaped events at 1,000/s through a
// `kubectl rollout restart` of the DaemonSet and then a `kubectl delete
// pod`: in the hub, every sequence sent is exactly once an event or inside
// exactly one loss record's range (the seq_gap records of the moments when
// no pod was reading); nothing is stored twice and nothing is lost for
// another reason.
func TestRolloutWhileEventsFlow(t *testing.T) {
	c := need(t)
	h := startHub(t)
	o := newOverlay(t)
	o.subscribe = injectSub
	deploy(t, c, h, o)
	rollout(t, c)
	p0 := waitReadyPod(t, c, time.Minute)
	waitMetrics(t, o, 30*time.Second, "joined", func(m proctest.Metrics) bool { return m.Sum("genlbridge_subscription_joined") == 1 })

	s := newSender(t)
	stop := make(chan struct{})
	flowErr := s.flow(1000, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-flowErr
		}
	}()
	// flowing through pod p reads at least n more events than it had.
	flowing := func(p corev1.Pod, n float64) {
		t.Helper()
		m0, _ := scrape(o)
		base := m0.Sum("genlbridge_events_received_total")
		waitMetrics(t, o, time.Minute, fmt.Sprintf("%v events through %s", n, p.Name), func(m proctest.Metrics) bool {
			return m.Sum("genlbridge_events_received_total") >= base+n
		})
	}
	flowing(p0, 3000)

	start := time.Now()
	kubectl(t, c, "-n", namespace, "rollout", "restart", "ds/"+dsName)
	rollout(t, c)
	p1 := waitReadyPod(t, c, 2*time.Minute, p0.Name)
	t.Logf("rollout restart: %s replaced by %s, Ready after %v (%d sent so far)", p0.Name, p1.Name, time.Since(start).Round(time.Millisecond), s.sent())
	flowing(p1, 3000)

	start = time.Now()
	kubectl(t, c, "-n", namespace, "delete", "pod", p1.Name)
	p2 := waitReadyPod(t, c, 2*time.Minute, p0.Name, p1.Name)
	t.Logf("pod %s deleted, replaced by %s, Ready after %v (%d sent so far)", p1.Name, p2.Name, time.Since(start).Round(time.Millisecond), s.sent())
	flowing(p2, 3000)

	close(stop)
	if err := <-flowErr; err != nil {
		t.Fatal(err)
	}
	sent := s.sent()
	waitAccounted(t, h, sent, 2*time.Minute)
	events, lost := account(t, h, sent)
	for r := range lost {
		if r != event.ReasonSeqGap {
			t.Errorf("%d events lost for %s: only the gaps between pods (seq_gap) are expected", lost[r], r)
		}
	}
	t.Logf("sent %d at 1,000/s: %d events in the hub once each, %d in seq_gap loss records with exact ranges (the pods' changeovers), nothing twice",
		sent, events, lost[event.ReasonSeqGap])
}
