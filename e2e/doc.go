// Package e2e holds end-to-end tests: the genlbridge binary run as a
// process (internal/proctest), against nats-server processes (internal/jstest)
// and the real kernel in fresh network namespaces (internal/netnstest).
// They need root; without it they skip.
package e2e
