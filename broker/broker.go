// Package broker runs the NATS server embedded in genlbridge when no URL is
// configured: JetStream on, its store in a data directory. The server runs in
// its own goroutines until Shutdown.
package broker

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config of the embedded server.
type Config struct {
	// Listen is host:port; port 0 picks a free one (tests).
	Listen string
	// StoreDir holds JetStream's files.
	StoreDir string
	// JetStream enables JetStream (the default run keeps it on).
	JetStream bool
	// Options, if set, is applied to the server options last (auth in tests).
	Options func(*server.Options)
}

// Server is a running embedded NATS server.
type Server struct {
	s *server.Server
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
	return &Server{s: s}, nil
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
