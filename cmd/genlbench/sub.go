//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/genlbridge/genlbridge/event"
	"github.com/nats-io/nats.go"
)

// subscriber counts events and loss records at the end of a pipeline and
// samples the latency from each event's kernel_ns to its arrival.
type subscriber struct {
	nc  *nats.Conn
	mu  sync.Mutex
	n   uint64
	los uint64
	lat []float64
	at  time.Time
}

func subscribe(url string) (*subscriber, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	s := &subscriber{nc: nc, lat: make([]float64, 0, 1<<20)}
	sub, err := nc.Subscribe("genl.>", s.handle)
	if err != nil {
		nc.Close()
		return nil, err
	}
	sub.SetPendingLimits(-1, -1)
	return s, nc.Flush()
}

var kernelKey = []byte(`"kernel_ns":`)

func (s *subscriber) handle(m *nats.Msg) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at = now
	data := m.Data
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(line) == 0 {
			continue
		}
		if bytes.HasPrefix(line, []byte(`{"type":"loss"`)) {
			var l event.Loss
			if json.Unmarshal(line, &l) == nil {
				s.los += l.Count
			}
			continue
		}
		s.n++
		if s.n%sampleEvery != 0 || len(s.lat) == cap(s.lat) {
			continue
		}
		if i := bytes.Index(line, kernelKey); i >= 0 {
			rest := line[i+len(kernelKey):]
			j := 0
			for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
				j++
			}
			if k, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
				s.lat = append(s.lat, float64(now.UnixNano()-k)/1e3)
			}
		}
	}
}

func (s *subscriber) counts() (events, lost uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.los
}

func (s *subscriber) lastTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.at
}

func (s *subscriber) latencies() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]float64(nil), s.lat...)
}

func (s *subscriber) close() { s.nc.Close() }
