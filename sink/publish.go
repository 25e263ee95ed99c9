package sink

import (
	_ "unsafe" // go:linkname

	"github.com/nats-io/nats.go"
)

// The NATS sinks publish each message with the header block the encoder
// wrote into its buffer (header.go). nats.go's PublishMsg encodes a Header
// map again at every call, with two allocations a message (more with the
// ce- headers); it has no call that takes header bytes,
// so the sink calls the client's own publish function, which PublishMsg
// calls with the bytes it made. TestPublishHeaderBytes proves the header
// arrives as written, against a real server: the test fails, and the
// build of this file is to be reviewed, on an upgrade of nats.go that
// changes that function (go.mod pins the version).

//go:linkname natsPublish github.com/nats-io/nats%2ego.(*Conn).publish
func natsPublish(nc *nats.Conn, subj, reply string, validateReply bool, hdr, data []byte) error

// hdrLine starts a NATS header block.
const hdrLine = "NATS/1.0\r\n"

// publishRaw publishes data on subj with reply and the header block hdr
// (nil: none).
func publishRaw(nc *nats.Conn, subj, reply string, hdr, data []byte) error {
	return natsPublish(nc, subj, reply, reply != "", hdr, data)
}
