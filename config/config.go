// Package config reads genlbridge's configuration: GENLBRIDGE_* environment
// variables (github.com/kelseyhightower/envconfig), with command-line flags
// of the same names on top. A bad value is an error that names the variable
// (and flag) and says what it expects. The package holds no state.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/genlbridge/genlbridge/natsconn"

	"github.com/genlbridge/genlbridge/bridge"
	"github.com/genlbridge/genlbridge/sink"
	"github.com/kelseyhightower/envconfig"
)

// Prefix of every environment variable.
const Prefix = "GENLBRIDGE"

// Config of the daemon and its tools. Each field's envconfig tag is its
// variable, the whole name: envconfig falls back to a field's bare tag when
// the prefixed variable is unset, so a prefix would let SINK or NATS_URL
// (the nats CLI's own) change the daemon. Without GENLBRIDGE_ and
// lower-cased with dashes, the tag is the field's flag.
type Config struct {
	Subscribe []string `envconfig:"GENLBRIDGE_SUBSCRIBE" default:"CONTROL_EXMPL/EXMPL_GRP" desc:"family/group pairs to join, comma-separated; each decodes with its family's YNL spec when one is found, else generically; append :ynl (a spec is required), :generic or :exmpl to choose"`
	SpecDirs  []string `envconfig:"GENLBRIDGE_SPEC_DIRS" desc:"directories of YNL specs (*.yaml, *.yaml.gz) and genlbridge overrides (*.override.yaml), comma-separated; they win over the specs built in, then /usr/share/ynl/specs, then Debian's linux-doc-* specs (newest first); a file in them that does not parse stops the start"`

	NATSURL        string `envconfig:"GENLBRIDGE_NATS_URL" desc:"NATS server URL(s), comma-separated; empty: run an embedded server"`
	EmbeddedListen string `envconfig:"GENLBRIDGE_EMBEDDED_LISTEN" default:"127.0.0.1:4222" desc:"listen address of the embedded NATS server"`
	DataDir        string `envconfig:"GENLBRIDGE_DATA_DIR" default:"/var/lib/genlbridge" desc:"directory of the embedded server's JetStream store and of its client credentials (nats-user.nk)"`
	EmbeddedAuth   bool   `envconfig:"GENLBRIDGE_EMBEDDED_AUTH" default:"true" desc:"the embedded server admits only the nkey it generates at first start in DATA_DIR/nats-user.nk (readable by root only), which tail, replay and the bridge use; false: any local process may connect, publish and read"`

	Sink         Choice        `envconfig:"GENLBRIDGE_SINK" default:"auto" choices:"auto,nats,jetstream,stdout" desc:"where events go: nats (core NATS subjects), jetstream (a stream, acknowledged and deduplicated), stdout (JSON lines, for debugging); auto: jetstream with the embedded server, nats with GENLBRIDGE_NATS_URL"`
	Subject      string        `envconfig:"GENLBRIDGE_SUBJECT" default:"genl.{family}.{group}.{host}" desc:"subject template of events ({family}, {group}, {host}, {op}: the message's name, e.g. dev-add-ntf, or its command number when it has none)"`
	LossSubject  string        `envconfig:"GENLBRIDGE_LOSS_SUBJECT" default:"genl.{family}.{group}.{host}.loss" desc:"subject template of loss records"`
	MessageMode  Choice        `envconfig:"GENLBRIDGE_MESSAGE_MODE" default:"event" choices:"event,batch" desc:"event: one NATS message per event; batch: one message of JSON lines per batch"`
	CloudEvents  bool          `envconfig:"GENLBRIDGE_CLOUDEVENTS" default:"true" desc:"each message of one record (an event, a loss record) also carries the CloudEvents NATS binding's binary-mode headers (ce-specversion, ce-id, ce-source, ce-type, ce-time, content-type; about 250 bytes); batched messages carry none"`
	FlushTimeout time.Duration `envconfig:"GENLBRIDGE_FLUSH_TIMEOUT" default:"5s" desc:"how long a batch may wait for the server's confirmation before it is sent again"`
	RetryMax     time.Duration `envconfig:"GENLBRIDGE_RETRY_MAX" default:"2s" desc:"longest backoff between delivery attempts"`

	Stream                string        `envconfig:"GENLBRIDGE_STREAM" default:"GENL" desc:"jetstream sink: name of the stream"`
	StreamSubjects        []string      `envconfig:"GENLBRIDGE_STREAM_SUBJECTS" default:"genl.>" desc:"jetstream sink: the stream's subjects, comma-separated; must capture SUBJECT and LOSS_SUBJECT"`
	StreamMaxAge          time.Duration `envconfig:"GENLBRIDGE_STREAM_MAX_AGE" default:"24h" desc:"jetstream sink: oldest message the stream keeps (0: no limit)"`
	StreamMaxBytes        ByteSize      `envconfig:"GENLBRIDGE_STREAM_MAX_BYTES" default:"1GiB" desc:"jetstream sink: most bytes the stream keeps, oldest dropped first (0: no limit)"`
	StreamMaxMsgs         int           `envconfig:"GENLBRIDGE_STREAM_MAX_MSGS" default:"0" desc:"jetstream sink: most messages the stream keeps (0: no limit)"`
	StreamStorage         Choice        `envconfig:"GENLBRIDGE_STREAM_STORAGE" default:"file" choices:"file,memory" desc:"jetstream sink: the stream's storage"`
	StreamReplicas        int           `envconfig:"GENLBRIDGE_STREAM_REPLICAS" default:"1" desc:"jetstream sink: the stream's replicas (1-5)"`
	StreamDuplicateWindow time.Duration `envconfig:"GENLBRIDGE_STREAM_DUPLICATE_WINDOW" default:"2m" desc:"jetstream sink: how long the server remembers message ids; at least FLUSH_TIMEOUT + RETRY_MAX (one republish), and the outage it outlasts by that much is deduplicated; the server keeps one id per message within it"`
	StreamFastBatch       bool          `envconfig:"GENLBRIDGE_STREAM_FAST_BATCH" default:"true" desc:"jetstream sink: publish the messages sent together as one JetStream fast batch (the stream allows them: allow_batched; nats-server 2.14 or later), acknowledged every few messages and once at its end instead of one acknowledgement a message; a managed stream is made to allow them, an unmanaged one that does not is published to one acknowledgement a message (logged)"`
	StreamManage          bool          `envconfig:"GENLBRIDGE_STREAM_MANAGE" default:"true" desc:"jetstream sink: create the stream if missing and fail if it differs; false: never touch it, only check it exists and captures the subjects"`
	MaxInFlight           int           `envconfig:"GENLBRIDGE_MAX_IN_FLIGHT" default:"4096" desc:"jetstream sink and spool forwarder: most messages published and not yet acknowledged, across batches"`

	Spool         Choice   `envconfig:"GENLBRIDGE_SPOOL" default:"auto" choices:"auto,on,off" desc:"keep events in a spool on this node's disk (a log of checksummed records) while the fleet's server cannot take them, and forward them in order once it can; auto: on with GENLBRIDGE_NATS_URL, off with the embedded server"`
	SpoolDir      string   `envconfig:"GENLBRIDGE_SPOOL_DIR" default:"/var/lib/genlbridge/spool" desc:"directory of the spool's log and state (a hostPath in Kubernetes, so that it outlives the pod); one bridge at a time"`
	SpoolSync     string   `envconfig:"GENLBRIDGE_SPOOL_SYNC" default:"always" desc:"when the spool puts what it takes on the disk: always (synced before a batch counts as delivered, so a power cut loses nothing it took; syncs are shared by the batches written meanwhile), or an interval such as 100ms or 1s (a power cut may lose what it took in the last interval)"`
	SpoolMaxBytes ByteSize `envconfig:"GENLBRIDGE_SPOOL_MAX_BYTES" default:"1GiB" desc:"most bytes the spool holds; when full, new events are counted as spool_full and nothing spooled is dropped; an outage of T seconds at R events/s needs about T*R*430 bytes (module-shaped events; see deploy/README.md)"`

	ReceiveBuffer         ByteSize      `envconfig:"GENLBRIDGE_RECEIVE_BUFFER" default:"64MiB" desc:"socket receive buffer per subscription; the kernel grants twice this, and a queued event takes 750-930 bytes of it, so the default holds a burst of about 140,000 events"`
	ReadBatch             int           `envconfig:"GENLBRIDGE_READ_BATCH" default:"64" desc:"datagrams read per recvmmsg call (1-1024)"`
	AllowUserspaceSenders bool          `envconfig:"GENLBRIDGE_ALLOW_USERSPACE_SENDERS" default:"false" desc:"accept messages sent by userspace processes (tests, benchmarks)"`
	QueueSize             int           `envconfig:"GENLBRIDGE_QUEUE_SIZE" default:"16384" desc:"events the queue between reader and sink holds"`
	QueuePolicy           Choice        `envconfig:"GENLBRIDGE_QUEUE_POLICY" default:"block" choices:"block,drop-newest,drop-oldest" desc:"when the queue is full: block reading, or drop the newest or oldest event"`
	BatchEvents           int           `envconfig:"GENLBRIDGE_BATCH_EVENTS" default:"1024" desc:"most events in a batch (a batch is also cut by BATCH_BYTES and BATCH_LINGER, so at low rates batches stay small)"`
	BatchBytes            ByteSize      `envconfig:"GENLBRIDGE_BATCH_BYTES" default:"512KiB" desc:"most encoded bytes in a batch (estimate)"`
	BatchLinger           time.Duration `envconfig:"GENLBRIDGE_BATCH_LINGER" default:"1ms" desc:"longest time the first event of a batch waits for more"`
	ResyncInterval        time.Duration `envconfig:"GENLBRIDGE_RESYNC_INTERVAL" default:"30s" desc:"how often subscriptions are resolved again, besides nlctrl notifications"`
	ShutdownTimeout       time.Duration `envconfig:"GENLBRIDGE_SHUTDOWN_TIMEOUT" default:"10s" desc:"on SIGTERM, how long the events in the sockets and the queue may take to be delivered; the rest is counted as publish_failed"`
	ShutdownScrapeWait    time.Duration `envconfig:"GENLBRIDGE_SHUTDOWN_SCRAPE_WAIT" default:"0s" desc:"once stopped, how long /metrics keeps serving until it has been scraped once with the final counts (0: exit at once)"`

	HTTPAddr             string        `envconfig:"GENLBRIDGE_HTTP_ADDR" default:":9477" desc:"address serving /metrics, /healthz and /readyz (empty: none)"`
	Pprof                bool          `envconfig:"GENLBRIDGE_PPROF" default:"false" desc:"serve Go's profiling endpoints under /debug/pprof/ on HTTP_ADDR"`
	DeniedUnhealthyAfter time.Duration `envconfig:"GENLBRIDGE_DENIED_UNHEALTHY_AFTER" default:"1m" desc:"/healthz fails once the NATS server has refused publishes for permissions this long in a row: this identity may not publish the node's subjects (a GENLBRIDGE_NODE_NAME its credentials are not for)"`
	ReadyRequiresJoined  bool          `envconfig:"GENLBRIDGE_READY_REQUIRES_JOINED" default:"false" desc:"/readyz fails while a subscription waits for its family (default: waiting for a module that is not loaded yet is ready)"`

	NATSCreds        string `envconfig:"GENLBRIDGE_NATS_CREDS" desc:"NATS user credentials file (JWT and nkey seed, .creds)"`
	NATSNKeySeed     string `envconfig:"GENLBRIDGE_NATS_NKEY_SEED" desc:"file holding a NATS user nkey seed"`
	NATSToken        string `envconfig:"GENLBRIDGE_NATS_TOKEN" desc:"NATS token (prefer NATS_TOKEN_FILE)"`
	NATSTokenFile    string `envconfig:"GENLBRIDGE_NATS_TOKEN_FILE" desc:"file holding the NATS token"`
	NATSUser         string `envconfig:"GENLBRIDGE_NATS_USER" desc:"NATS user name, with NATS_PASSWORD or NATS_PASSWORD_FILE"`
	NATSPassword     string `envconfig:"GENLBRIDGE_NATS_PASSWORD" desc:"NATS password (prefer NATS_PASSWORD_FILE)"`
	NATSPasswordFile string `envconfig:"GENLBRIDGE_NATS_PASSWORD_FILE" desc:"file holding the NATS password"`
	NATSTLSCA        string `envconfig:"GENLBRIDGE_NATS_TLS_CA" desc:"CA file that verifies the NATS server (TLS)"`
	NATSTLSCert      string `envconfig:"GENLBRIDGE_NATS_TLS_CERT" desc:"client certificate file for mutual TLS, with NATS_TLS_KEY"`
	NATSTLSKey       string `envconfig:"GENLBRIDGE_NATS_TLS_KEY" desc:"client key file for mutual TLS"`

	NodeName  string `envconfig:"GENLBRIDGE_NODE_NAME" desc:"host name stamped on events (also read from NODE_NAME); default: the kernel's hostname"`
	NetNS     string `envconfig:"GENLBRIDGE_NETNS" desc:"path of a network namespace to read in (e.g. /run/netns/test); default: the current one"`
	LogLevel  Choice `envconfig:"GENLBRIDGE_LOG_LEVEL" default:"info" choices:"debug,info,warn,error" desc:"log level"`
	LogFormat Choice `envconfig:"GENLBRIDGE_LOG_FORMAT" default:"text" choices:"text,json" desc:"log format"`
}

// Choice is a string restricted to the field's `choices` tag; the check is
// done by Load, which knows the tag.
type Choice string

// ByteSize is a size in bytes, written as 1048576, 512KiB, 32MiB or 1GiB.
type ByteSize int

// Decode implements envconfig.Decoder.
func (b *ByteSize) Decode(v string) error {
	s := strings.TrimSpace(v)
	mult := 1
	for _, u := range []struct {
		suf string
		m   int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suf)), u.m
			break
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return errors.New("want a size in bytes such as 212992, 512KiB or 32MiB")
	}
	*b = ByteSize(n * mult)
	return nil
}

// Var describes one setting, for help text and for checks that manifests
// and docs use real names.
type Var struct {
	Env, Flag, Default, Desc, Field string
}

// Vars lists every setting in declaration order.
func Vars() []Var {
	t := reflect.TypeOf(Config{})
	out := make([]Var, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		env := f.Tag.Get("envconfig")
		out = append(out, Var{
			Env:     env,
			Flag:    strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, Prefix+"_")), "_", "-"),
			Default: f.Tag.Get("default"),
			Desc:    f.Tag.Get("desc"),
			Field:   f.Name,
		})
	}
	return out
}

// Usage writes the table of settings.
func Usage(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tFLAG\tDEFAULT\tMEANING")
	for _, v := range Vars() {
		def := v.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "%s\t--%s\t%s\t%s\n", v.Env, v.Flag, def, v.Desc)
	}
	tw.Flush()
}

// Flags registers one flag per setting on fs, holding its text until Load
// checks it. A boolean setting's flag may be given alone (--pprof), as
// --pprof=true or --pprof=false. Pass the result to Load.
func Flags(fs *flag.FlagSet) map[string]*string {
	m := map[string]*string{}
	t := reflect.TypeOf(Config{})
	for _, v := range Vars() {
		usage := fmt.Sprintf("%s (env %s, default %q)", v.Desc, v.Env, v.Default)
		if f, _ := t.FieldByName(v.Field); f.Type.Kind() == reflect.Bool {
			p := new(string)
			fs.Var(boolText{p}, v.Flag, usage)
			m[v.Env] = p
			continue
		}
		m[v.Env] = fs.String(v.Flag, "", usage)
	}
	return m
}

// boolText is a boolean flag kept as text: a bare --flag sets "true".
type boolText struct{ p *string }

func (b boolText) String() string {
	if b.p == nil {
		return ""
	}
	return *b.p
}
func (b boolText) Set(v string) error { *b.p = v; return nil }
func (b boolText) IsBoolFlag() bool   { return true }

// Load reads the environment, with the flags that fs has seen set on top,
// and checks every value. fs and flags may be nil.
func Load(fs *flag.FlagSet, flags map[string]*string) (*Config, error) {
	overrides := map[string]string{}
	if fs != nil {
		fs.Visit(func(f *flag.Flag) {
			for _, v := range Vars() {
				if v.Flag == f.Name {
					overrides[v.Env] = *flags[v.Env]
				}
			}
		})
	}
	// envconfig reads the process environment: set the flag values there
	// for the call, then restore it.
	for k, v := range overrides {
		old, had := os.LookupEnv(k)
		os.Setenv(k, v)
		if had {
			defer os.Setenv(k, old)
		} else {
			defer os.Unsetenv(k)
		}
	}
	var c Config
	// No prefix: the tags are the whole names (see Config).
	if err := envconfig.Process("", &c); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return nil, badValue(pe.KeyName, pe.Value, expectation(pe.FieldName, pe.Err))
		}
		return nil, err
	}
	if c.NodeName == "" {
		// Kubernetes' downward API, documented with GENLBRIDGE_NODE_NAME.
		c.NodeName = os.Getenv("NODE_NAME")
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

// BadValueError is a setting with a value it cannot take.
type BadValueError struct {
	Env, Flag, Value, Want string
}

func (e *BadValueError) Error() string {
	return fmt.Sprintf("%s (--%s) = %q: %s", e.Env, e.Flag, e.Value, e.Want)
}

func badValue(env, value, want string) error {
	flagName := ""
	for _, v := range Vars() {
		if v.Env == env {
			flagName = v.Flag
		}
	}
	return &BadValueError{Env: env, Flag: flagName, Value: value, Want: want}
}

func expectation(field string, err error) string {
	f, _ := reflect.TypeOf(Config{}).FieldByName(field)
	switch f.Type {
	case reflect.TypeOf(time.Duration(0)):
		return "want a duration such as 500ms, 5s or 2m"
	case reflect.TypeOf(ByteSize(0)):
		return "want a size in bytes such as 212992, 512KiB or 32MiB"
	}
	switch f.Type.Kind() {
	case reflect.Int:
		return "want a whole number"
	case reflect.Bool:
		return "want true or false"
	}
	return "invalid: " + err.Error()
}

func (c *Config) check() error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if ch := f.Tag.Get("choices"); ch != "" {
			val := v.Field(i).String()
			if !slices.Contains(strings.Split(ch, ","), val) {
				return badValue(f.Tag.Get("envconfig"), val, "want one of "+strings.ReplaceAll(ch, ",", ", "))
			}
		}
	}
	positive := []struct {
		env string
		n   int
	}{
		{"QUEUE_SIZE", c.QueueSize}, {"BATCH_EVENTS", c.BatchEvents}, {"BATCH_BYTES", int(c.BatchBytes)},
		{"READ_BATCH", c.ReadBatch}, {"STREAM_REPLICAS", c.StreamReplicas}, {"MAX_IN_FLIGHT", c.MaxInFlight},
	}
	for _, p := range positive {
		if p.n < 1 {
			return badValue(Prefix+"_"+p.env, strconv.Itoa(p.n), "want a number of at least 1")
		}
	}
	if c.ReadBatch > 1024 {
		return badValue(Prefix+"_READ_BATCH", strconv.Itoa(c.ReadBatch), "want at most 1024")
	}
	durations := []struct {
		env string
		d   time.Duration
	}{
		{"BATCH_LINGER", c.BatchLinger}, {"RESYNC_INTERVAL", c.ResyncInterval}, {"SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
		{"FLUSH_TIMEOUT", c.FlushTimeout}, {"RETRY_MAX", c.RetryMax}, {"STREAM_DUPLICATE_WINDOW", c.StreamDuplicateWindow},
	}
	for _, d := range durations {
		if d.d <= 0 {
			return badValue(Prefix+"_"+d.env, d.d.String(), "want a positive duration such as 500ms, 5s or 2m")
		}
	}
	if c.ShutdownScrapeWait < 0 {
		return badValue(Prefix+"_SHUTDOWN_SCRAPE_WAIT", c.ShutdownScrapeWait.String(), "want 0 (exit at once) or a positive duration")
	}
	if c.HTTPAddr != "" {
		if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || port == "" {
			return badValue(Prefix+"_HTTP_ADDR", c.HTTPAddr, "want host:port or :port, e.g. :9477 (empty: no HTTP)")
		}
	}
	for _, f := range []struct{ env, path string }{
		{"NATS_CREDS", c.NATSCreds}, {"NATS_NKEY_SEED", c.NATSNKeySeed}, {"NATS_TOKEN_FILE", c.NATSTokenFile},
		{"NATS_PASSWORD_FILE", c.NATSPasswordFile}, {"NATS_TLS_CA", c.NATSTLSCA}, {"NATS_TLS_CERT", c.NATSTLSCert}, {"NATS_TLS_KEY", c.NATSTLSKey},
	} {
		if f.path == "" {
			continue
		}
		if fh, err := os.Open(f.path); err != nil {
			return badValue(Prefix+"_"+f.env, f.path, "want a readable file: "+err.Error())
		} else {
			fh.Close()
		}
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		return badValue(Prefix+"_NATS_TLS_CERT", c.NATSTLSCert, "a client certificate needs both NATS_TLS_CERT and NATS_TLS_KEY")
	}
	if c.NATSUser == "" && (c.NATSPassword != "" || c.NATSPasswordFile != "") {
		return badValue(Prefix+"_NATS_USER", "", "a password needs a user")
	}
	for _, d := range c.SpecDirs {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return badValue(Prefix+"_SPEC_DIRS", strings.Join(c.SpecDirs, ","), "want existing directories: "+d+" is not one")
		}
	}
	if _, err := c.Subscriptions(); err != nil {
		return badValue(Prefix+"_SUBSCRIBE", strings.Join(c.Subscribe, ","), err.Error())
	}
	if _, err := sink.ParseTemplate(c.Subject); err != nil {
		return badValue(Prefix+"_SUBJECT", c.Subject, err.Error())
	}
	if lt, err := sink.ParseTemplate(c.LossSubject); err != nil {
		return badValue(Prefix+"_LOSS_SUBJECT", c.LossSubject, err.Error())
	} else if lt.HasOp() {
		return badValue(Prefix+"_LOSS_SUBJECT", c.LossSubject, "a loss record has no {op}: use {family}, {group} and {host}")
	}
	if c.UsesJetStream() {
		if err := c.checkStream(); err != nil {
			return err
		}
	}
	if c.Spool == "on" && (c.NATSURL == "" || c.Sink == "stdout") {
		return badValue(Prefix+"_SPOOL", string(c.Spool), "the spool keeps events for a remote server: set GENLBRIDGE_NATS_URL (and a NATS sink), or use auto or off")
	}
	if c.UsesSpool() {
		if c.SpoolMaxBytes < 1<<20 {
			return badValue(Prefix+"_SPOOL_MAX_BYTES", strconv.Itoa(int(c.SpoolMaxBytes)), "want at least 1MiB")
		}
		if _, err := c.SpoolSyncInterval(); err != nil {
			return badValue(Prefix+"_SPOOL_SYNC", c.SpoolSync, "want always, or an interval such as 100ms or 1s")
		}
		if c.SpoolDir == "" {
			return badValue(Prefix+"_SPOOL_DIR", "", "want a directory")
		}
	}
	if c.ReceiveBuffer < 4096 {
		return badValue(Prefix+"_RECEIVE_BUFFER", strconv.Itoa(int(c.ReceiveBuffer)), "want at least 4KiB")
	}
	if c.ReceiveBuffer > 1<<30 {
		// The kernel takes an int and caps it at INT_MAX/2 (it grants twice).
		return badValue(Prefix+"_RECEIVE_BUFFER", strconv.Itoa(int(c.ReceiveBuffer)), "want at most 1GiB, the most a socket buffer can be")
	}
	return nil
}

// EmbeddedSeedFile is where the embedded server keeps the nkey seed of the
// one client it admits (see EmbeddedAuth).
func (c *Config) EmbeddedSeedFile() string { return EmbeddedSeedFile(c.DataDir) }

// EmbeddedSeedFile is the embedded server's client seed file in dataDir.
func EmbeddedSeedFile(dataDir string) string { return filepath.Join(dataDir, "nats-user.nk") }

// Default returns a setting's default (the empty string for an unknown one).
func Default(env string) string {
	for _, v := range Vars() {
		if v.Env == env {
			return v.Default
		}
	}
	return ""
}

// SpoolSyncInterval is GENLBRIDGE_SPOOL_SYNC: 0 for always.
func (c *Config) SpoolSyncInterval() (time.Duration, error) {
	if c.SpoolSync == "always" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.SpoolSync)
	if err != nil || d <= 0 {
		return 0, errors.New("want always or a positive duration")
	}
	return d, nil
}

// UsesSpool says whether events go through the node's spool: on, or auto
// with a remote server (GENLBRIDGE_NATS_URL).
func (c *Config) UsesSpool() bool {
	return c.Spool == "on" || (c.Spool == "auto" && c.NATSURL != "" && c.Sink != "stdout")
}

// UsesJetStream says whether the daemon publishes into a JetStream stream:
// GENLBRIDGE_SINK=jetstream, or auto with the embedded server (no
// GENLBRIDGE_NATS_URL). Only then do the GENLBRIDGE_STREAM_* settings apply.
func (c *Config) UsesJetStream() bool {
	return c.Sink == "jetstream" || (c.Sink == "auto" && c.NATSURL == "")
}

// Auth gathers the NATS authentication settings.
func (c *Config) Auth() natsconn.Auth {
	return natsconn.Auth{CredsFile: c.NATSCreds, NKeySeedFile: c.NATSNKeySeed, Token: c.NATSToken, TokenFile: c.NATSTokenFile,
		User: c.NATSUser, Password: c.NATSPassword, PasswordFile: c.NATSPasswordFile,
		TLSCA: c.NATSTLSCA, TLSCert: c.NATSTLSCert, TLSKey: c.NATSTLSKey}
}

// Subscriptions parses Subscribe.
func (c *Config) Subscriptions() ([]bridge.Subscription, error) {
	return bridge.ParseSubscriptions(c.Subscribe)
}

// Templates parses Subject and LossSubject (checked by Load).
func (c *Config) Templates() (events, losses sink.Template) {
	events, _ = sink.ParseTemplate(c.Subject)
	losses, _ = sink.ParseTemplate(c.LossSubject)
	return events, losses
}

func (c *Config) checkStream() error {
	if c.Stream == "" || strings.ContainsAny(c.Stream, ".*> \t\r\n/\\") {
		return badValue(Prefix+"_STREAM", c.Stream, "want a name without spaces, dots, slashes or wildcards")
	}
	if len(c.StreamSubjects) == 0 {
		return badValue(Prefix+"_STREAM_SUBJECTS", "", "want at least one subject, such as genl.>")
	}
	if c.StreamReplicas > 5 {
		return badValue(Prefix+"_STREAM_REPLICAS", strconv.Itoa(c.StreamReplicas), "want 1 to 5")
	}
	if c.StreamMaxAge < 0 {
		return badValue(Prefix+"_STREAM_MAX_AGE", c.StreamMaxAge.String(), "want 0 (no limit) or more")
	}
	if c.StreamMaxMsgs < 0 {
		return badValue(Prefix+"_STREAM_MAX_MSGS", strconv.Itoa(c.StreamMaxMsgs), "want 0 (no limit) or more")
	}
	if span := c.FlushTimeout + c.RetryMax; c.StreamDuplicateWindow < span {
		return badValue(Prefix+"_STREAM_DUPLICATE_WINDOW", c.StreamDuplicateWindow.String(),
			fmt.Sprintf("want at least FLUSH_TIMEOUT + RETRY_MAX = %s, or a republished record could be stored twice", span))
	}
	if c.StreamMaxAge > 0 && c.StreamDuplicateWindow > c.StreamMaxAge {
		return badValue(Prefix+"_STREAM_DUPLICATE_WINDOW", c.StreamDuplicateWindow.String(), "want at most STREAM_MAX_AGE "+c.StreamMaxAge.String())
	}
	return nil
}

// JetStream is the JetStream sink's configuration (without a logger).
func (c *Config) JetStream() sink.JetStreamConfig {
	events, losses := c.Templates()
	return sink.JetStreamConfig{
		Subject: events, LossSubject: losses, Batched: c.MessageMode == "batch", CloudEvents: c.CloudEvents,
		Stream: sink.StreamConfig{Name: c.Stream, Subjects: c.StreamSubjects, MaxAge: c.StreamMaxAge,
			MaxBytes: int64(c.StreamMaxBytes), MaxMsgs: int64(c.StreamMaxMsgs), Storage: string(c.StreamStorage),
			Replicas: c.StreamReplicas, DuplicateWindow: c.StreamDuplicateWindow, AllowBatchPublish: c.StreamFastBatch},
		Manage: c.StreamManage, MaxInFlight: c.MaxInFlight, AckTimeout: c.FlushTimeout, RetryMax: c.RetryMax,
		// A republished event lands at most a batch (or the ack window)
		// behind later ones.
		ResumeWindow: max(c.BatchEvents, c.MaxInFlight),
	}
}
