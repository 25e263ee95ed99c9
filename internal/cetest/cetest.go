// Package cetest reads NATS messages as a foreign CloudEvents consumer
// would: through the CloudEvents Go SDK's binding, from the message's
// headers (binary content mode: ce-<attribute> headers, content-type for
// datacontenttype, the payload as data). The SDK's own NATS protocol
// modules are separate modules this build does not use; Message is the
// few lines such a module has over nats.go's message, so that what is
// tested is the SDK's reading of the attributes and its validation.
package cetest

import (
	"bytes"
	"context"
	"strings"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
)

// versions are the CloudEvents spec versions with the binding's "ce-"
// header prefix.
var versions = spec.WithPrefix("ce-")

// Message is a nats.Msg as a binding.Message.
type Message struct{ Msg *nats.Msg }

var (
	_ binding.Message               = Message{}
	_ binding.MessageMetadataReader = Message{}
)

// ReadEncoding: binary when the message has ce-specversion, structured
// when its content type is a CloudEvents format, else unknown.
func (m Message) ReadEncoding() binding.Encoding {
	if m.Msg.Header.Get(versions.PrefixedSpecVersionName()) != "" {
		return binding.EncodingBinary
	}
	if format.Lookup(m.Msg.Header.Get("content-type")) != nil {
		return binding.EncodingStructured
	}
	return binding.EncodingUnknown
}

// ReadStructured hands a structured message's payload to w.
func (m Message) ReadStructured(ctx context.Context, w binding.StructuredWriter) error {
	f := format.Lookup(m.Msg.Header.Get("content-type"))
	if f == nil {
		return binding.ErrNotStructured
	}
	return w.SetStructuredEvent(ctx, f, bytes.NewReader(m.Msg.Data))
}

// ReadBinary hands a binary message's ce- headers, content type and
// payload to w.
func (m Message) ReadBinary(ctx context.Context, w binding.BinaryWriter) error {
	v := versions.Version(m.Msg.Header.Get(versions.PrefixedSpecVersionName()))
	if v == nil {
		return binding.ErrUnknownEncoding
	}
	for k, vals := range m.Msg.Header {
		if len(vals) == 0 {
			continue
		}
		lk := strings.ToLower(k)
		switch {
		case lk == "content-type":
			if err := w.SetAttribute(v.AttributeFromKind(spec.DataContentType), vals[0]); err != nil {
				return err
			}
		case strings.HasPrefix(lk, versions.Prefix()):
			if a := v.Attribute(lk); a != nil {
				if err := w.SetAttribute(a, vals[0]); err != nil {
					return err
				}
			} else if err := w.SetExtension(strings.TrimPrefix(lk, versions.Prefix()), vals[0]); err != nil {
				return err
			}
		}
	}
	if len(m.Msg.Data) > 0 {
		return w.SetData(bytes.NewReader(m.Msg.Data))
	}
	return nil
}

// GetAttribute returns the attribute of kind k from the headers.
func (m Message) GetAttribute(k spec.Kind) (spec.Attribute, interface{}) {
	v := versions.Version(m.Msg.Header.Get(versions.PrefixedSpecVersionName()))
	if v == nil {
		return nil, nil
	}
	a := v.AttributeFromKind(k)
	if a == nil {
		return nil, nil
	}
	name := a.PrefixedName()
	if k == spec.DataContentType {
		name = "content-type"
	}
	if h := m.Msg.Header.Get(name); h != "" {
		return a, h
	}
	return a, nil
}

// GetExtension returns the ce-<name> header's value, if any.
func (m Message) GetExtension(name string) interface{} {
	if h := m.Msg.Header.Get(versions.Prefix() + name); h != "" {
		return h
	}
	return nil
}

// Finish does nothing: the message needs no acknowledgement here.
func (m Message) Finish(error) error { return nil }

// Event converts msg with the SDK and validates the result.
func Event(msg *nats.Msg) (*ce.Event, error) {
	e, err := binding.ToEvent(context.Background(), Message{msg})
	if err != nil {
		return nil, err
	}
	return e, e.Validate()
}
