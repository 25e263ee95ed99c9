package natsconn

import (
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Denials keeps what the server refused the connection for permissions: a
// publish to a subject, or a subscription, it may not make (nats.go hears
// of it asynchronously, as an error, and goes on). Each is counted, logged
// (once a minute per subject, with the subject), and passed to the
// listeners (the sinks, which give up on what they published there instead
// of waiting for an acknowledgement that will never come). Safe for
// concurrent use.
type Denials struct {
	log *slog.Logger

	mu        sync.Mutex
	publish   uint64
	subscribe uint64
	logged    map[string]time.Time // subject -> last logged
	// streak is when denials began to follow each other less than Quiet
	// apart; last is the latest one and lastSubject its subject.
	streak, last time.Time
	lastSubject  string
	listeners    []func(subject string)
}

// Quiet is how long without a denial ends a streak of them.
const Quiet = time.Minute

// NewDenials returns an empty Denials that logs to log.
func NewDenials(log *slog.Logger) *Denials {
	if log == nil {
		log = slog.Default()
	}
	return &Denials{log: log, logged: map[string]time.Time{}}
}

// OnPublish adds a listener of publish denials. Listeners are called on
// nats.go's error goroutine and must not block.
func (d *Denials) OnPublish(fn func(subject string)) {
	d.mu.Lock()
	d.listeners = append(d.listeners, fn)
	d.mu.Unlock()
}

// permissionRe reads nats-server's "Permissions Violation for Publish to
// "subject"" (or Subscription to).
var permissionRe = regexp.MustCompile(`(?i)permissions violation for (publish|subscription) to "([^"]*)"`)

// ParseDenial returns what a permissions violation error is about: "publish"
// or "subscribe", and the subject. ok is false for any other error.
func ParseDenial(err error) (kind, subject string, ok bool) {
	if err == nil || !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
		return "", "", false
	}
	m := permissionRe.FindStringSubmatch(err.Error())
	if m == nil {
		return "", "", false
	}
	kind = "publish"
	if strings.EqualFold(m[1], "subscription") {
		kind = "subscribe"
	}
	return kind, m[2], true
}

// Note takes an error of the connection; it reports whether it was a
// permissions violation (then counted, logged and passed on).
func (d *Denials) Note(err error) bool {
	kind, subject, ok := ParseDenial(err)
	if !ok {
		return false
	}
	now := time.Now()
	d.mu.Lock()
	if kind == "publish" {
		d.publish++
	} else {
		d.subscribe++
	}
	if d.last.IsZero() || now.Sub(d.last) > Quiet {
		d.streak = now
	}
	d.last, d.lastSubject = now, subject
	logIt := now.Sub(d.logged[subject]) >= time.Minute
	if logIt {
		if len(d.logged) > 1024 {
			clear(d.logged)
		}
		d.logged[subject] = now
	}
	listeners := d.listeners
	d.mu.Unlock()
	if logIt {
		d.log.Error("the nats server refused a "+kind+" for permissions: this identity may not use the subject (logged once a minute per subject, counted in genlbridge_permission_denied_total)",
			"subject", subject, "err", err)
	}
	if kind == "publish" {
		for _, fn := range listeners {
			fn(subject)
		}
	}
	return true
}

// Counts returns the denials of publishes and of subscriptions so far.
func (d *Denials) Counts() (publish, subscribe uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.publish, d.subscribe
}

// Persisting returns, when denials have followed each other (less than
// Quiet apart) for longer than min up to now, since when and the latest
// subject; ok is false otherwise.
func (d *Denials) Persisting(min time.Duration) (since time.Time, subject string, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if d.last.IsZero() || now.Sub(d.last) > Quiet || now.Sub(d.streak) < min {
		return time.Time{}, "", false
	}
	return d.streak, d.lastSubject, true
}
