package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream sink's stream: its configuration, creating it or checking it.

// StreamConfig is the JetStream stream the sink publishes into. Zero limits
// mean unlimited.
type StreamConfig struct {
	Name     string
	Subjects []string
	MaxAge   time.Duration
	MaxBytes int64
	MaxMsgs  int64
	// Storage is "file" or "memory".
	Storage  string
	Replicas int
	// DuplicateWindow is how long the server remembers a Nats-Msg-Id: a
	// record published again within it is stored once. It must cover the
	// sink's retries (see JetStreamConfig.RetrySpan).
	DuplicateWindow time.Duration
	// AllowBatchPublish lets publishers send JetStream fast batches into
	// the stream (nats-server 2.14 or later; allow_batched).
	AllowBatchPublish bool
}

// DefaultStream is the stream the sink creates when told nothing else.
var DefaultStream = StreamConfig{
	Name:              "GENL",
	Subjects:          []string{"genl.>"},
	MaxAge:            24 * time.Hour,
	MaxBytes:          1 << 30,
	Storage:           "file",
	Replicas:          1,
	DuplicateWindow:   2 * time.Minute,
	AllowBatchPublish: true,
}

// provision creates the stream or checks it, and checks that its duplicate
// window covers the sink's retry span.
func (s *JetStream) provision(ctx context.Context) error {
	want := s.cfg.Stream
	if err := s.checkSubjects(want.Subjects); err != nil {
		return err
	}
	if s.cfg.Manage {
		// What is checked against the stream below, before creating it.
		if err := s.checkWindow(want.DuplicateWindow); err != nil {
			return err
		}
	}
	st, err := s.js.Stream(ctx, want.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && s.cfg.Manage:
		st, err = s.js.CreateStream(ctx, want.jetstream())
		if err != nil {
			return fmt.Errorf("create stream %s: %w", want.Name, err)
		}
		s.log.Info("created stream", "stream", want.Name, "subjects", strings.Join(want.Subjects, ","), "max_age", want.MaxAge,
			"max_bytes", want.MaxBytes, "max_msgs", want.MaxMsgs, "storage", want.Storage, "replicas", want.Replicas,
			"duplicate_window", want.DuplicateWindow)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("stream %s does not exist and the sink may not create it (GENLBRIDGE_STREAM_MANAGE=false): create it with subjects %s",
			want.Name, strings.Join(want.Subjects, ","))
	case err != nil && !s.cfg.Manage:
		s.log.Warn("cannot look at the stream; publishing without checking it or its duplicate window", "stream", want.Name, "err", err)
		return nil
	case err != nil:
		return fmt.Errorf("look up stream %s: %w", want.Name, err)
	}
	s.stream = st
	have := st.CachedInfo().Config
	if s.cfg.Manage {
		if d := streamDiff(want, have); len(d) > 0 {
			return fmt.Errorf("stream %s exists with another configuration (left unchanged; change the stream or the GENLBRIDGE_STREAM_* settings): %s",
				want.Name, strings.Join(d, "; "))
		}
		if want.AllowBatchPublish && !have.AllowBatchPublish || !have.AllowDirect {
			// Allowing fast batches and direct gets changes nothing that
			// is stored: a stream made before (or by an older bridge) is
			// updated.
			up := have
			up.AllowBatchPublish = up.AllowBatchPublish || want.AllowBatchPublish
			up.AllowDirect = true
			if st, err = s.js.UpdateStream(ctx, up); err != nil {
				s.log.Warn("cannot allow fast batches and direct gets in the stream; publishing one acknowledgement a message", "stream", want.Name, "err", err)
			} else {
				s.stream, have = st, st.CachedInfo().Config
				s.log.Info("allowed fast batch publishing and direct gets in the stream (allow_batched, allow_direct)", "stream", want.Name)
			}
		}
		s.batch = want.AllowBatchPublish && have.AllowBatchPublish
		return nil
	}
	if err := s.checkSubjects(have.Subjects); err != nil {
		return fmt.Errorf("stream %s: %w", want.Name, err)
	}
	s.batch = want.AllowBatchPublish && have.AllowBatchPublish
	if !have.AllowDirect {
		s.log.Warn("the stream does not allow direct gets (allow_direct): the resume point is read with $JS.API.STREAM.MSG.GET, which a node's own permissions (genlbridge permissions) do not grant",
			"stream", want.Name)
	}
	if want.AllowBatchPublish && !have.AllowBatchPublish {
		s.log.Warn("the stream does not allow fast batch publishing (allow_batched; nats-server 2.14 or later): publishing one acknowledgement a message, which costs the server and the bridge more",
			"stream", want.Name)
	}
	return s.checkWindow(have.Duplicates)
}

// checkSubjects checks that subjects capture what the templates make.
func (s *JetStream) checkSubjects(subjects []string) error {
	for _, t := range []Template{s.cfg.Subject, s.cfg.LossSubject} {
		probe := t.Subject("f", "g", "h", "o")
		ok := false
		for _, f := range subjects {
			ok = ok || server.SubjectMatchesFilter(probe, f)
		}
		if !ok {
			return fmt.Errorf("stream subjects %s do not capture subject template %s", strings.Join(subjects, ","), t)
		}
	}
	return nil
}

// checkWindow fails when no republish could be deduplicated, and warns
// when the window covers only a few rounds of retries.
func (s *JetStream) checkWindow(window time.Duration) error {
	span := s.cfg.RetrySpan()
	if window < span {
		return fmt.Errorf("stream %s: duplicate window %s is shorter than the retry span %s (ack timeout %s + longest backoff %s): a republished record could be stored twice; raise GENLBRIDGE_STREAM_DUPLICATE_WINDOW or lower GENLBRIDGE_FLUSH_TIMEOUT/GENLBRIDGE_RETRY_MAX",
			s.cfg.Stream.Name, window, span, s.cfg.AckTimeout, s.cfg.RetryMax)
	}
	if window < 4*span {
		s.log.Warn("the stream's duplicate window covers fewer than 4 retry spans: a longer outage may store records twice",
			"duplicate_window", window, "retry_span", span)
	}
	s.log.Info("deduplication", "stream", s.cfg.Stream.Name, "duplicate_window", window, "retry_span", span,
		"outage_covered", window-span)
	return nil
}

func (c StreamConfig) jetstream() jetstream.StreamConfig {
	sc := jetstream.StreamConfig{
		Name:       c.Name,
		Subjects:   c.Subjects,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
		MaxAge:     c.MaxAge,
		MaxBytes:   unlimited(c.MaxBytes),
		MaxMsgs:    unlimited(c.MaxMsgs),
		Storage:    storageType(c.Storage),
		Replicas:   c.Replicas,
		Duplicates: c.DuplicateWindow,
		// Batches are allowed only where they are used.
		AllowBatchPublish: c.AllowBatchPublish,
		// The resume point is read with direct gets, which a node's
		// permissions allow on its own subjects alone.
		AllowDirect: true,
	}
	return sc
}

func unlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

func storageType(s string) jetstream.StorageType {
	if s == "memory" {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// streamDiff lists, field by field, how have differs from want.
func streamDiff(want StreamConfig, have jetstream.StreamConfig) []string {
	w := want.jetstream()
	var d []string
	add := func(field string, h, w any) {
		d = append(d, fmt.Sprintf("%s: stream has %v, configured %v", field, h, w))
	}
	if !sameSet(have.Subjects, w.Subjects) {
		add("subjects", strings.Join(have.Subjects, ","), strings.Join(w.Subjects, ","))
	}
	if have.MaxAge != w.MaxAge {
		add("max_age", have.MaxAge, w.MaxAge)
	}
	if unlimited(have.MaxBytes) != w.MaxBytes {
		add("max_bytes", have.MaxBytes, w.MaxBytes)
	}
	if unlimited(have.MaxMsgs) != w.MaxMsgs {
		add("max_msgs", have.MaxMsgs, w.MaxMsgs)
	}
	if have.Storage != w.Storage {
		add("storage", have.Storage, w.Storage)
	}
	if max(have.Replicas, 1) != w.Replicas {
		add("replicas", have.Replicas, w.Replicas)
	}
	if have.Duplicates != w.Duplicates {
		add("duplicate_window", have.Duplicates, w.Duplicates)
	}
	// A work-queue or interest stream, or one that refuses new messages when
	// full, would make a full stream a delivery that never succeeds.
	if have.Retention != w.Retention {
		add("retention", have.Retention, w.Retention)
	}
	if have.Discard != w.Discard {
		add("discard", have.Discard, w.Discard)
	}
	return d
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		if m[s] == 0 {
			return false
		}
		m[s]--
	}
	return true
}
