package sink

import (
	"bytes"
	"net/url"

	"github.com/genlbridge/genlbridge/event"
)

// The header contract. Every message carries a header block written once
// into the encoder's buffer (no allocation per message):
//
//	Nats-Msg-Id: <id>             MsgID / LossMsgID; a batched message's
//	                              names its first event and "-<last seq>"
//
// and, with CloudEvents on (the default), every message of one record (an
// event, or a loss record) also carries the CloudEvents NATS binding's
// binary-mode attributes, its body being the event's JSON:
//
//	ce-specversion: 1.0
//	ce-id: <the Nats-Msg-Id>
//	ce-source: genlbridge:/<host>/<family>/<group>   (each escaped)
//	ce-type: com.github.genlbridge.<family>.<op>   (events; op: the YNL
//	         message's name, else "cmd<N>")
//	         com.github.genlbridge.loss             (loss records)
//	ce-time: <kernel_time, else recv_time; a loss record's time>
//	content-type: application/json
//
// A batched message (several events, JSON lines) is no one event: it has
// no ce- headers.

// CETypePrefix starts every ce-type genlbridge writes.
const CETypePrefix = "com.github.genlbridge."

// CELossType is the ce-type of loss records.
const CELossType = CETypePrefix + "loss"

// ceSource is the ce-source of a subscription's records: an absolute URI
// whose path names the host and the subscription, each segment escaped as
// a URI path needs ("genlbridge:/node-1/netdev/mgmt"). The host is no URI
// authority: a node name may hold what an authority may not.
func ceSource(host, family, group string) string {
	return "genlbridge:/" + url.PathEscape(host) + "/" + url.PathEscape(family) + "/" + url.PathEscape(group)
}

// ceType is the ce-type prefix of a family's events ("<prefix><family>."),
// the op following it.
func ceType(family string) string { return CETypePrefix + headerValue(family) + "." }

// headerValue makes s fit a header value: control characters (CR and LF
// above all) become '_'.
func headerValue(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c == 0x7f {
			b[i] = '_'
		}
	}
	return string(b)
}

// ceOp appends e's op for its ce-type: the YNL message's name, else
// "cmd<N>".
func ceOp(dst []byte, e *event.Event) []byte {
	if e.Op != "" {
		return append(dst, headerValue(e.Op)...)
	}
	dst = append(dst, "cmd"...)
	return append(dst, cmdTokens[e.Cmd]...)
}

const (
	hdrMsgID   = "Nats-Msg-Id: "
	hdrCEStart = "ce-specversion: 1.0\r\nce-id: "
)

// MsgIDOf returns the Nats-Msg-Id of a header block the encoder wrote (nil
// if it has none).
func MsgIDOf(hdr []byte) []byte {
	i := bytes.Index(hdr, []byte(hdrMsgID))
	if i < 0 {
		return nil
	}
	v := hdr[i+len(hdrMsgID):]
	if j := bytes.IndexByte(v, '\r'); j >= 0 {
		return v[:j]
	}
	return nil
}
