package sink

import (
	"strconv"

	"github.com/genlbridge/genlbridge/event"
)

// The Nats-Msg-Id contract: every record is published with an id that is
// unique per record and the same each time it is published again, so that a
// JetStream stream drops the repeats within its duplicate window.

// MsgID is the Nats-Msg-Id of an event: boot id, family, group, instance and
// sequence, unique per event and the same when it is published again:
// "<boot_id>.<family>.<group>.<instance>.<seq>", numbers in base 10 as in
// the body.
func MsgID(dst []byte, e *event.Event) []byte {
	dst = append(dst, e.BootID...)
	dst = append(dst, '.')
	dst = append(dst, e.Family...)
	dst = append(dst, '.')
	dst = append(dst, e.Group...)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, e.Instance, 10)
	dst = append(dst, '.')
	return strconv.AppendUint(dst, e.Seq, 10)
}

// LossMsgID is the Nats-Msg-Id of a loss record:
// "<boot_id>.<family>.<group>.loss.<reason>.<time in ns>.<first_seq>" (0
// without a range), numbers in base 10.
func LossMsgID(dst []byte, l *event.Loss) []byte {
	dst = append(dst, l.BootID...)
	dst = append(dst, '.')
	dst = append(dst, l.Family...)
	dst = append(dst, '.')
	dst = append(dst, l.Group...)
	dst = append(dst, ".loss."...)
	dst = append(dst, l.Reason...)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, l.TimeNS, 10)
	dst = append(dst, '.')
	return strconv.AppendUint(dst, l.FirstSeq, 10)
}
