// Package broker runs the NATS server embedded in genlbridge when no URL is
// configured: JetStream on, its store in a data directory, and by default
// only one client allowed in: the holder of an nkey whose seed the broker
// generates at first start and keeps in a file readable by its owner only
// (root), so that no other local user or container on the host network can
// publish forged events or read them. The server runs in its own goroutines
// until Shutdown.
package broker

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Config of the embedded server.
type Config struct {
	// Listen is host:port; port 0 picks a free one (tests).
	Listen string
	// StoreDir holds JetStream's files.
	StoreDir string
	// JetStream enables JetStream (the default run keeps it on).
	JetStream bool
	// SeedFile, if set, makes the server require the nkey user whose seed
	// it holds; the file is created (mode 0600, its directory 0700 if
	// new) with a fresh seed when it does not exist. Empty: no
	// authentication.
	SeedFile string
	// Options, if set, is applied to the server options last (auth in tests).
	Options func(*server.Options)
}

// Server is a running embedded NATS server.
type Server struct {
	s        *server.Server
	seedFile string
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	host, portS, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return nil, fmt.Errorf("embedded nats listen address %q: port: %w", cfg.Listen, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "genlbridge-embedded",
		Host:       host,
		Port:       port,
		JetStream:  cfg.JetStream,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 1 << 20,
	}
	if cfg.SeedFile != "" {
		pub, err := EnsureSeed(cfg.SeedFile)
		if err != nil {
			return nil, err
		}
		opts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	}
	if cfg.Options != nil {
		cfg.Options(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats on %s: not ready after 10s", cfg.Listen)
	}
	return &Server{s: s, seedFile: cfg.SeedFile}, nil
}

// ClientOptions are the options a client needs to connect (the nkey of
// Config.SeedFile), nil without authentication.
func (s *Server) ClientOptions() ([]nats.Option, error) {
	if s.seedFile == "" {
		return nil, nil
	}
	o, err := nats.NkeyOptionFromSeed(s.seedFile)
	if err != nil {
		return nil, fmt.Errorf("embedded nats credentials: %w", err)
	}
	return []nats.Option{o}, nil
}

// EnsureSeed returns the public key of the nkey user seed in path, creating
// the file with a fresh seed, readable by its owner only, when it does not
// exist. A seed file that others may read is made private again.
func EnsureSeed(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := createSeed(path); err != nil {
			return "", fmt.Errorf("embedded nats credentials: %w", err)
		}
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("embedded nats credentials: %w", err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return "", fmt.Errorf("embedded nats credentials %s are readable by others and cannot be made private: %w", path, err)
		}
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(data))
	if err != nil {
		return "", fmt.Errorf("embedded nats credentials %s: %w", path, err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("embedded nats credentials %s: %w", path, err)
	}
	return pub, nil
}

// URL is the client URL of the server.
func (s *Server) URL() string { return s.s.ClientURL() }

// Server exposes the nats-server instance (monitoring in tests).
func (s *Server) Server() *server.Server { return s.s }

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.s.Shutdown()
	s.s.WaitForShutdown()
}

// createSeed writes a fresh nkey user seed to path, readable by its owner
// only. When another process created the file first, its seed is kept.
func createSeed(path string) error {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return err
	}
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = f.Write(append(seed, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
