package bridge

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/event"
)

type fakeCounter struct{ v uint32 }

func (f *fakeCounter) drops() (uint32, error) { return f.v, nil }

type lossList struct{ recs []event.Loss }

func (l *lossList) add(rec event.Loss, publish bool) {
	if publish {
		l.recs = append(l.recs, rec)
	}
}

// A step is what the reader tells the sequencer, in the order it sees it:
//
//	ev N      an event whose module sequence is N (0: the family has none)
//	counter N the kernel's drop counter becomes N (nobody reads it yet)
//	drops N   the counter becomes N and the reader reads it
//	empty N   the socket is found empty with the counter at N
//	marker    a new registration of the family begins
//	malformed a message that could not be decoded
//	final     the socket has left its group and is drained
type step struct {
	op string
	n  uint64
}

func ev(n uint64) step      { return step{"ev", n} }
func counter(n uint64) step { return step{"counter", n} }
func drops(n uint64) step   { return step{"drops", n} }
func empty(n uint64) step   { return step{"empty", n} }

var (
	marker    = step{op: "marker"}
	malformed = step{op: "malformed"}
	final     = step{op: "final"}
)

// TestSequencer drives the sequence and drop attribution with what a
// reader sees, and checks the events' numbering and the loss records:
// events as seq+source@instance ("5k@1": module sequence 5 in the first
// instance, "2b": the bridge's own count), losses as "reason count
// [first-last]@instance". Instances are numbered in the order they appear.
func TestSequencer(t *testing.T) {
	resumeAt := func(boot string, inst, seq uint64) resumePoint {
		return resumePoint{ok: true, bootID: boot, instance: inst, seq: seq}
	}
	cases := []struct {
		name      string
		resume    resumePoint
		dropsSeen uint32
		steps     []step
		events    string
		losses    string
		socket    uint64 // drops the kernel counted
	}{
		{name: "in order", steps: []step{ev(1), ev(2), ev(3)}, events: "1k@1 2k@1 3k@1"},
		{name: "the module skipped numbers", steps: []step{ev(1), ev(2), ev(5)},
			events: "1k@1 2k@1 5k@1", losses: "seq_gap 2 [3-4]@1"},
		{name: "an overrun is placed at the gap that shows it", steps: []step{ev(1), ev(2), counter(3), ev(6)},
			events: "1k@1 2k@1 6k@1", losses: "overrun 3 [3-5]@1", socket: 3},
		{name: "drops beyond the gap are the newest, placed when the socket is found empty",
			steps:  []step{ev(1), counter(5), ev(3), empty(5), ev(8)},
			events: "1k@1 3k@1 8k@1", losses: "overrun 1 [2-2]@1, overrun 4 [4-7]@1", socket: 5},
		{name: "drops read while events still wait in the socket are not those events",
			steps:  []step{ev(1), drops(10), ev(2), ev(3), ev(4), ev(5), empty(10), ev(16)},
			events: "1k@1 2k@1 3k@1 4k@1 5k@1 16k@1", losses: "overrun 10 [6-15]@1", socket: 10},
		{name: "drops placed ahead, then contradicted by the next event",
			// The counter also counts other datagrams: 2 follows 1, so the
			// three were not this sequence's; the later gap is the module's.
			steps:  []step{ev(1), empty(3), ev(2), ev(6)},
			events: "1k@1 2k@1 6k@1", losses: "overrun 3 [2-4]@1, seq_gap 3 [3-5]@1", socket: 3},
		{name: "a malformed message is one loss, not also a gap", steps: []step{ev(1), malformed, ev(3)},
			events: "1k@1 3k@1", losses: "malformed 1"},
		{name: "a malformed message and a gap", steps: []step{ev(1), malformed, ev(5)},
			events: "1k@1 5k@1", losses: "malformed 1, seq_gap 2 [3-4]@1"},
		{name: "a reset without a marker is a new instance", steps: []step{ev(1), ev(2), ev(3), ev(7), ev(3), ev(4)},
			events: "1k@1 2k@1 3k@1 7k@1 3k@2 4k@2", losses: "seq_gap 3 [4-6]@1, seq_gap 2 [1-2]@2"},
		{name: "a marker: the new registration starts at 1", steps: []step{ev(1), ev(2), marker, ev(1), ev(2)},
			events: "1k@1 2k@1 1k@2 2k@2"},
		{name: "a marker, then the registration's first events missed", steps: []step{ev(1), marker, ev(3)},
			events: "1k@1 3k@2", losses: "seq_gap 2 [1-2]@2"},
		{name: "a marker between drops", steps: []step{ev(1), ev(2), ev(3), counter(4), marker, ev(1), ev(4), empty(4)},
			events: "1k@1 2k@1 3k@1 1k@2 4k@2", losses: "overrun 2 [2-3]@2, overrun 2 [5-6]@2", socket: 4},
		{name: "a family without a sequence: the bridge numbers it, drops go at once without a range",
			steps: []step{ev(0), ev(0), drops(3), ev(0)}, events: "1b 2b 3b", losses: "overrun 3", socket: 3},
		{name: "a marker keeps bridge-numbered drops rangeless", steps: []step{ev(0), marker, drops(5), ev(0), empty(5)},
			events: "1b 2b", losses: "overrun 5", socket: 5},
		{name: "resume: the registration went on while the bridge was down", resume: resumeAt("boot", 42, 100),
			steps: []step{ev(151), ev(152)}, events: "151k@1 152k@1", losses: "seq_gap 50 [101-150]@1"},
		{name: "resume: the next event in order", resume: resumeAt("boot", 42, 100), steps: []step{ev(101)}, events: "101k@1"},
		{name: "resume: reloaded meanwhile (the sequence is back at or below the stored one)", resume: resumeAt("boot", 42, 100),
			steps: []step{ev(1), ev(2)}, events: "1k@1 2k@1"},
		{name: "resume: another boot says nothing", resume: resumeAt("other-boot", 42, 100), steps: []step{ev(500)}, events: "500k@1"},
		{name: "the drop counter wraps at 2^32", dropsSeen: 0xFFFFFFFE, steps: []step{ev(1), counter(3), ev(5), empty(3)},
			events: "1k@1 5k@1", losses: "overrun 3 [2-4]@1, overrun 2 [6-7]@1", socket: 5},
		{name: "drops before any event wait for the events to place them", steps: []step{drops(2), ev(1), empty(2)},
			events: "1k@1", losses: "overrun 2 [2-3]@1", socket: 2},
		{name: "drops before any event are counted once, not again by the gap that shows them (frozen right after joining)",
			steps:  []step{drops(47480), empty(47480), ev(1), ev(2), ev(3), drops(47480), empty(47480), ev(47484), ev(47485)},
			events: "1k@1 2k@1 3k@1 47484k@1 47485k@1", losses: "overrun 47480 [4-47483]@1", socket: 47480},
		{name: "drops before any event of a family without a sequence go with its first event",
			steps: []step{drops(2), empty(2), ev(0), ev(0)}, events: "1b 2b", losses: "overrun 2", socket: 2},
		{name: "drops no event placed are published at the end", steps: []step{drops(4), final},
			losses: "overrun 4", socket: 4},
		{name: "drops after the last event are placed at the end", steps: []step{ev(1), counter(2), final},
			events: "1k@1", losses: "overrun 2 [2-3]@1", socket: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fc := &fakeCounter{v: c.dropsSeen}
			ll := &lossList{}
			s := &sequencer{tmpl: event.Loss{Host: "h", BootID: "boot", Family: "f", Group: "g"}, runInstance: 7,
				losses: ll, counter: fc, resume: c.resume, dropsSeen: c.dropsSeen}
			now := time.Unix(1000, 0)
			labels := map[uint64]int{}
			label := func(inst uint64) int {
				if _, ok := labels[inst]; !ok {
					labels[inst] = len(labels) + 1
				}
				return labels[inst]
			}
			var evs []string
			for _, st := range c.steps {
				now = now.Add(time.Microsecond)
				switch st.op {
				case "ev":
					e := event.Event{Seq: st.n}
					s.Event(&e, now)
					if e.SeqSource == event.SeqBridge {
						if e.Instance != 7 {
							t.Fatalf("bridge-numbered event in instance %d, want the run's 7", e.Instance)
						}
						evs = append(evs, fmt.Sprintf("%db", e.Seq))
					} else {
						evs = append(evs, fmt.Sprintf("%dk@%d", e.Seq, label(e.Instance)))
					}
				case "counter":
					fc.v = uint32(st.n)
				case "drops":
					fc.v = uint32(st.n)
					s.Drops(now)
				case "empty":
					fc.v = uint32(st.n)
					s.Empty(uint32(st.n), now)
				case "marker":
					s.Marker(now)
				case "malformed":
					s.Malformed(now)
				case "final":
					if d, err := fc.drops(); err == nil {
						s.Empty(d, now)
					}
					s.Final(now)
				}
			}
			var losses []string
			for _, l := range ll.recs {
				if l.Host != "h" || l.BootID != "boot" || l.Family != "f" || l.Group != "g" {
					t.Fatalf("record %+v: wrong subscription", l)
				}
				if l.FirstSeq == 0 {
					if l.Instance != 0 || l.LastSeq != 0 {
						t.Fatalf("record %+v: an instance without a range", l)
					}
					losses = append(losses, fmt.Sprintf("%s %d", l.Reason, l.Count))
					continue
				}
				if l.LastSeq-l.FirstSeq+1 != l.Count {
					t.Fatalf("record %+v: count does not match its range", l)
				}
				losses = append(losses, fmt.Sprintf("%s %d [%d-%d]@%d", l.Reason, l.Count, l.FirstSeq, l.LastSeq, label(l.Instance)))
			}
			if got := strings.Join(evs, " "); got != c.events {
				t.Errorf("events %q, want %q", got, c.events)
			}
			if got := strings.Join(losses, ", "); got != c.losses {
				t.Errorf("losses %q, want %q", got, c.losses)
			}
			if got := s.socketDrops.Load(); got != c.socket {
				t.Errorf("socket drops %d, want %d", got, c.socket)
			}
			if c.resume.ok && len(c.steps) > 0 && c.resume.seq < c.steps[0].n && c.resume.bootID == "boot" {
				for inst, l := range labels {
					if l == 1 && inst != c.resume.instance {
						t.Errorf("instance %d after resuming, want the stored %d kept", inst, c.resume.instance)
					}
				}
			}
		})
	}
}
