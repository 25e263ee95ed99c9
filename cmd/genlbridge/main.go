// Command genlbridge moves generic netlink multicast events from the kernel
// to NATS. One binary holds the daemon (run) and the tools around it.
//
// GOMAXPROCS is set once at start from the CPU limit (of the container's
// cgroup) and not re-read every second: that read is one of the few
// wake-ups of an idle daemon. A limit changed while it runs applies at its
// next start (or set GODEBUG=updatemaxprocs=1).
//
//go:debug updatemaxprocs=0
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/genlbridge/genlbridge/natsconn"

	"github.com/genlbridge/genlbridge/config"
	"github.com/nats-io/nats.go"
)

var version = "dev"

const usage = `genlbridge: kernel generic netlink events to NATS

Usage:
  genlbridge run [flags]            run the bridge (embedded NATS when no URL is set)
  genlbridge tail [flags] [subject] print events from NATS (default subject genl.>)
  genlbridge replay [flags]         read events back from the JetStream stream (by time, sequence, host...)
  genlbridge audit [flags]          prove the stream complete: every number arrived once or is in one loss record
  genlbridge families [--json]      list generic netlink families, their multicast groups and what decodes them
  genlbridge spec check FILE...     check YNL specs and overrides, say what they decode
  genlbridge schema [FAMILY[/GROUP]] the JSON Schema of the records (--out DIR: one file per family)
  genlbridge spool status|verify    what the node's spool holds; read every record of it back
  genlbridge permissions --node N   what node N's bridge may do on NATS (JSON)
  genlbridge creds issue --node N   node N's NATS credentials, from an account signing key
  genlbridge callout                the NATS auth callout responder for Kubernetes (projected tokens)
  genlbridge send emit MESSAGE      ask the CONTROL_EXMPL module for one event
  genlbridge send burst COUNT       ask the CONTROL_EXMPL module for COUNT events
  genlbridge version

Configuration comes from GENLBRIDGE_* variables, flags on top:
'genlbridge run --help' lists them all with their defaults.
`

func main() {
	os.Exit(mainErr(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks errors whose message is the whole story (flag errors print their own).
var errUsage = errors.New("usage")

func mainErr(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stdout, stderr)
	case "tail":
		err = cmdTail(args[1:], stdout, stderr)
	case "replay":
		err = cmdReplay(args[1:], stdout, stderr)
	case "audit":
		err = cmdAudit(args[1:], stdout, stderr)
	case "families":
		err = cmdFamilies(args[1:], stdout, stderr)
	case "send":
		err = cmdSend(args[1:], stdout, stderr)
	case "spec":
		err = cmdSpec(args[1:], stdout, stderr)
	case "schema":
		err = cmdSchema(args[1:], stdout, stderr)
	case "permissions":
		err = cmdPermissions(args[1:], stdout, stderr)
	case "creds":
		err = cmdCreds(args[1:], stdout, stderr)
	case "callout":
		err = cmdCallout(args[1:], stdout, stderr)
	case "spool":
		err = cmdSpool(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "genlbridge", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "genlbridge: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		if err != errUsage { // a wrapped one says what was wrong; the flag package printed the others
			fmt.Fprintf(stderr, "genlbridge %s: %v\n", args[0], strings.TrimSuffix(strings.TrimSuffix(err.Error(), errUsage.Error()), ": "))
		}
		return 2
	case errors.Is(err, errDamaged), errors.Is(err, errIncomplete):
		return 1
	default:
		fmt.Fprintf(stderr, "genlbridge %s: %v\n", args[0], err)
		return 1
	}
}

// newFlagSet returns a flag set that writes its errors to stderr.
func newFlagSet(name string, stderr io.Writer, help func(io.Writer)) *flag.FlagSet {
	fs := flag.NewFlagSet("genlbridge "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		help(stderr)
		// run's settings are listed by its help, with their variables.
		if name != "run" {
			fmt.Fprintln(stderr, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parse wraps flag parsing errors so that they exit 2.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// serverFlag registers --server, the NATS URL of the tools: default
// GENLBRIDGE_NATS_URL, else the embedded server's address.
func serverFlag(fs *flag.FlagSet) *string {
	def := os.Getenv(config.Prefix + "_NATS_URL")
	if def == "" {
		def = "nats://127.0.0.1:4222"
	}
	return fs.String("server", def, "NATS URL (env GENLBRIDGE_NATS_URL)")
}

// authFromEnv is the NATS authentication the GENLBRIDGE_NATS_* settings
// of the environment give a tool.
func authFromEnv() natsconn.Auth {
	env := func(k string) string { return os.Getenv(config.Prefix + "_" + k) }
	return natsconn.Auth{CredsFile: env("NATS_CREDS"), NKeySeedFile: env("NATS_NKEY_SEED"), Token: env("NATS_TOKEN"),
		TokenFile: env("NATS_TOKEN_FILE"), User: env("NATS_USER"), Password: env("NATS_PASSWORD"),
		PasswordFile: env("NATS_PASSWORD_FILE"), TLSCA: env("NATS_TLS_CA"), TLSCert: env("NATS_TLS_CERT"), TLSKey: env("NATS_TLS_KEY")}
}

// connectTool connects a tool (tail, replay) to NATS at url, with the
// authentication settings of the environment (GENLBRIDGE_NATS_CREDS, ...).
// With none of them and no GENLBRIDGE_NATS_URL it talks to the embedded
// server, and uses the credentials that server keeps in GENLBRIDGE_DATA_DIR
// when they are there (readable by root only).
func connectTool(url, name string) (*nats.Conn, error) {
	env := func(k string) string { return os.Getenv(config.Prefix + "_" + k) }
	a := authFromEnv()
	opts, err := a.Options()
	if err != nil {
		return nil, fmt.Errorf("nats authentication: %w", err)
	}
	hint := ""
	if a.String() == "none" && env("NATS_URL") == "" {
		dataDir := env("DATA_DIR")
		if dataDir == "" {
			dataDir = config.Default(config.Prefix + "_DATA_DIR")
		}
		seed := config.EmbeddedSeedFile(dataDir)
		switch _, err := os.Stat(seed); {
		case err == nil:
			o, err := nats.NkeyOptionFromSeed(seed)
			if err != nil {
				return nil, fmt.Errorf("the embedded server's credentials: %w (run as root, or set GENLBRIDGE_NATS_NKEY_SEED)", err)
			}
			opts = append(opts, o)
		case errors.Is(err, os.ErrNotExist):
			hint = fmt.Sprintf(" (no embedded server credentials in %s: set GENLBRIDGE_DATA_DIR to the bridge's, or GENLBRIDGE_NATS_URL and its GENLBRIDGE_NATS_* settings)", seed)
		default:
			hint = fmt.Sprintf(" (the embedded server's credentials %s: %v; run as root)", seed, err)
		}
	}
	opts = append(opts, nats.Name(name), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		fmt.Fprintf(os.Stderr, "%s: nats: %v\n", name, err) // e.g. a slow consumer losing messages
	}))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if !errors.Is(err, nats.ErrAuthorization) {
			hint = ""
		}
		return nil, fmt.Errorf("connect to nats %q: %w%s", url, err, hint)
	}
	return nc, nil
}
