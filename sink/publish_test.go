package sink

import (
	"testing"
	"time"

	"github.com/genlbridge/genlbridge/internal/jstest"
	"github.com/nats-io/nats.go"
)

// The header bytes the sink writes itself reach a subscriber as nats.go's
// own encoding would: the header, the reply subject and the payload, each
// as published. (It guards the linkname to nats.go's publish: a changed
// signature fails here.)
func TestPublishHeaderBytes(t *testing.T) {
	srv, nc := jstest.Start(t)
	_ = srv
	sub, err := nc.SubscribeSync("probe.>")
	if err != nil {
		t.Fatal(err)
	}
	hdr := []byte("NATS/1.0\r\nNats-Msg-Id: boot.f.g.5.42\r\n\r\n")
	if err := publishRaw(nc, "probe.one", "reply.to.me", hdr, []byte(`{"seq":42}`)); err != nil {
		t.Fatal(err)
	}
	if err := publishRaw(nc, "probe.two", "", nil, []byte("plain")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "probe.one" || m.Reply != "reply.to.me" || m.Header.Get(nats.MsgIdHdr) != "boot.f.g.5.42" || string(m.Data) != `{"seq":42}` {
		t.Fatalf("got %q reply %q header %v data %q", m.Subject, m.Reply, m.Header, m.Data)
	}
	m, err = sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "probe.two" || m.Reply != "" || len(m.Header) != 0 || string(m.Data) != "plain" {
		t.Fatalf("got %q reply %q header %v data %q", m.Subject, m.Reply, m.Header, m.Data)
	}
	// Errors come back as nats.go's own.
	big := make([]byte, nc.MaxPayload()+1)
	if err := publishRaw(nc, "probe.big", "", hdr, big); err != nats.ErrMaxPayload {
		t.Fatalf("a payload over the limit: %v, want nats.ErrMaxPayload", err)
	}
	if err := publishRaw(nc, "bad subject", "", hdr, nil); err != nats.ErrBadSubject {
		t.Fatalf("a bad subject: %v, want nats.ErrBadSubject", err)
	}
}
