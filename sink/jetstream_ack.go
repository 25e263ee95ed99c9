package sink

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// The JetStream sink's acknowledgements: replies on its wildcard inbox
// subscription, parsed without allocating, matched to the slot they answer.

var (
	errNoResponders = errors.New("no stream is listening on the subject")
	errAckTimeout   = errors.New("no acknowledgement within the ack timeout")
)

// onReply takes one acknowledgement (or error reply) for slot i of batch gen.
func (s *JetStream) onReply(m *nats.Msg) {
	gen, i, ok := parseReply(m.Subject[len(s.prefix):])
	if !ok {
		return
	}
	var err error
	switch {
	case len(m.Data) == 0 && m.Header.Get("Status") == "503":
		err = errNoResponders
	case len(m.Data) == 0:
		err = fmt.Errorf("empty acknowledgement (status %q)", m.Header.Get("Status"))
	case jsonKey(m.Data, keyError) != nil:
		err = fmt.Errorf("jetstream: %s", bytes.TrimSpace(m.Data))
	case jsonKey(m.Data, keyStream) == nil || jsonKey(m.Data, keySeq) == nil:
		// Not a PubAck: something other than a stream answered on the
		// subject. It proves nothing was stored; the stream's own answer,
		// or the ack timeout, decides.
		s.foreign.Add(1)
		return
	}
	changed := false
	s.mu.Lock()
	if gen == s.gen && i < uint64(len(s.slots)) && s.slots[i].state == slotInFlight {
		changed = true
		s.inFlight--
		if err != nil {
			s.slots[i].state = slotIdle
			s.lastErr = err
		} else {
			s.slots[i].state = slotAcked
			s.acked.Add(1)
			if bytes.HasPrefix(jsonKey(m.Data, keyDuplicate), []byte("true")) {
				s.duplicates.Add(1)
			}
		}
	}
	s.mu.Unlock()
	if changed { // stray replies must not put off the ack timeout
		s.signal()
	}
}

var (
	keyError, keyDuplicate = []byte(`"error"`), []byte(`"duplicate"`)
	keyStream, keySeq      = []byte(`"stream"`), []byte(`"seq"`)
)

// jsonKey returns what follows the quoted key's colon (and any spaces) in a
// flat JSON object such as a PubAck ({"stream":"S","seq":1,"duplicate": true}),
// or nil when the key is not there.
func jsonKey(data, quotedKey []byte) []byte {
	i := bytes.Index(data, quotedKey)
	if i < 0 {
		return nil
	}
	rest := bytes.TrimLeft(data[i+len(quotedKey):], " \t")
	if len(rest) == 0 || rest[0] != ':' {
		return nil
	}
	return bytes.TrimLeft(rest[1:], " \t")
}

// parseReply reads "gen.slot" (base 36) from the end of a reply subject.
func parseReply(tail string) (gen, slot uint64, ok bool) {
	dot := strings.IndexByte(tail, '.')
	if dot < 0 {
		return 0, 0, false
	}
	gen, err1 := strconv.ParseUint(tail[:dot], 36, 64)
	slot, err2 := strconv.ParseUint(tail[dot+1:], 36, 64)
	return gen, slot, err1 == nil && err2 == nil
}
