package sink

import (
	"bytes"
)

// The JetStream sink's acknowledgements: replies on its wildcard inbox
// subscription, parsed without allocating, matched to the slot they answer.

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
