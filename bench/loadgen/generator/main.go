// Command generator is the load generator of `python -m bench`: unary gRPC calls in a
// closed loop (fixed concurrency) or an open loop (constant arrival rate, latency
// measured from the intended send time).
//
// It knows nothing of the services: requests arrive as serialized bytes (one per
// choice, compiled by bench/loadgen/requests.py), in which it overwrites fresh UUIDs at
// given offsets, and responses stay bytes, from which it copies the strings at a field
// path into a file. It is built by bench/loadgen/build.py from Debian's Go packages.
//
// Usage: generator CONFIG.json OUT.json (prints "started" when its clock starts; the
// results go to OUT.json)
package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

// ------------------------------------------------------------------ config

type distribution struct {
	Kind string  `json:"kind"`
	S    float64 `json:"s"`
}

type collect struct {
	FieldPath []int  `json:"field_path"`
	File      string `json:"file"`
}

type config struct {
	Target      string       `json:"target"`
	Method      string       `json:"method"` // "/package.Service/Method"
	Mode        string       `json:"mode"`   // "closed" or "open"
	Concurrency int          `json:"concurrency"`
	Rate        float64      `json:"rate"`
	WarmupS     float64      `json:"warmup_s"`
	DurationS   float64      `json:"duration_s"`
	DeadlineMs  int          `json:"deadline_ms"`
	Channels    int          `json:"channels"`
	MaxInflight int64        `json:"max_inflight"`
	Procs       int          `json:"procs"`
	Requests    [][]byte     `json:"requests"`     // one serialized request per choice
	UUIDOffsets [][]int      `json:"uuid_offsets"` // where a fresh UUID goes, per choice
	Distrib     distribution `json:"distribution"`
	Seed        int64        `json:"seed"`
	Collect     *collect     `json:"collect"`
	TLS         *tlsFiles    `json:"tls"` // mutual TLS; nil: plaintext
}

type tlsFiles struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
	CA   string `json:"ca"`
}

// transport is plaintext, or mutual TLS with the configured client certificate.
func (c *config) transport() (grpc.DialOption, error) {
	if c.TLS == nil {
		return grpc.WithInsecure(), nil
	}
	pair, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(c.TLS.CA)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no CA certificate in %s", c.TLS.CA)
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      roots,
		MinVersion:   tls.VersionTLS12,
	})), nil
}

// ------------------------------------------------------------------ raw codec

// rawCodec sends and receives serialized messages as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "raw" }

// ------------------------------------------------------------------ protobuf wire

// fieldsOf calls fn for every length-delimited field of a message.
func fieldsOf(msg []byte, fn func(number int, value []byte)) {
	for pos := 0; pos < len(msg); {
		key, n := binary.Uvarint(msg[pos:])
		if n <= 0 {
			return
		}
		pos += n
		number, wire := int(key>>3), key&7
		switch wire {
		case 0:
			_, n = binary.Uvarint(msg[pos:])
			if n <= 0 {
				return
			}
			pos += n
		case 1:
			pos += 8
		case 5:
			pos += 4
		case 2:
			length, n := binary.Uvarint(msg[pos:])
			if n <= 0 || pos+n+int(length) > len(msg) {
				return
			}
			pos += n
			fn(number, msg[pos:pos+int(length)])
			pos += int(length)
		default:
			return
		}
	}
}

// stringsAt returns the strings at a path of field numbers (repeated fields flatten).
func stringsAt(msg []byte, path []int, out []string) []string {
	if len(path) == 0 {
		return append(out, string(msg))
	}
	fieldsOf(msg, func(number int, value []byte) {
		if number == path[0] {
			out = stringsAt(value, path[1:], out)
		}
	})
	return out
}

// errorReason reads google.rpc.ErrorInfo.reason from a status's details.
func errorReason(st *status.Status) string {
	for _, detail := range st.Proto().GetDetails() {
		if !strings.HasSuffix(detail.GetTypeUrl(), "google.rpc.ErrorInfo") {
			continue
		}
		reasons := stringsAt(detail.GetValue(), []int{1}, nil)
		if len(reasons) > 0 {
			return reasons[0]
		}
	}
	return ""
}

var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

// ------------------------------------------------------------------ ids and choices

// uuids makes version-4 UUIDs: random per run, unique within it (a counter).
type uuids struct {
	base    [16]byte
	counter uint64
}

func newUUIDs() *uuids {
	u := &uuids{}
	if _, err := crand.Read(u.base[:]); err != nil {
		panic(err)
	}
	return u
}

func (u *uuids) write(dst []byte) {
	b := u.base
	n := atomic.AddUint64(&u.counter, 1)
	for i := 0; i < 8; i++ {
		b[8+i] ^= byte(n >> (8 * (7 - i)))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	hex.Encode(dst[0:8], b[0:4])
	dst[8] = '-'
	hex.Encode(dst[9:13], b[4:6])
	dst[13] = '-'
	hex.Encode(dst[14:18], b[6:8])
	dst[18] = '-'
	hex.Encode(dst[19:23], b[8:10])
	dst[23] = '-'
	hex.Encode(dst[24:36], b[10:16])
}

// picker returns a choice index: uniform, or Zipf (P(i) ~ 1/(i+1)^s, 0 the hottest).
func picker(count int, d distribution, r *rand.Rand) func() int {
	if count <= 1 {
		return func() int { return 0 }
	}
	switch d.Kind {
	case "", "uniform":
		return func() int { return r.Intn(count) }
	case "zipf":
		cdf := make([]float64, count)
		total := 0.0
		for i := range cdf {
			total += 1 / math.Pow(float64(i+1), d.S)
			cdf[i] = total
		}
		for i := range cdf {
			cdf[i] /= total
		}
		return func() int { return sort.SearchFloat64s(cdf, r.Float64()) }
	}
	panic("unknown distribution " + d.Kind)
}

// ------------------------------------------------------------------ results

type errorEntry struct {
	Count  int64  `json:"count"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
	Sample string `json:"sample"`
}

type tally map[string]*errorEntry

func (t tally) add(code, reason, message string) {
	key := code
	if reason != "" {
		key = code + " " + reason
	}
	if e, ok := t[key]; ok {
		e.Count++
		return
	}
	if len(message) > 200 {
		message = message[:200]
	}
	t[key] = &errorEntry{1, code, reason, message}
}

func (t tally) total() int64 {
	var n int64
	for _, e := range t {
		n += e.Count
	}
	return n
}

type summary map[string]interface{}

func summarize(values []float64) summary {
	if len(values) == 0 {
		return summary{"count": 0}
	}
	sort.Float64s(values)
	at := func(q float64) float64 {
		i := int(q * float64(len(values)))
		if i >= len(values) {
			i = len(values) - 1
		}
		return values[i]
	}
	sum := 0.0
	for _, v := range values {
		sum += v
	}
	return summary{
		"count": len(values), "mean": sum / float64(len(values)), "p50": at(0.5),
		"p90": at(0.9), "p99": at(0.99), "p999": at(0.999), "max": values[len(values)-1],
	}
}

// ------------------------------------------------------------------ the run

type run struct {
	cfg         config
	conns       []*grpc.ClientConn
	ids         *uuids
	start       time.Time
	windowStart time.Time
	windowEnd   time.Time
	sent        int64
	inflight    int64

	mu          sync.Mutex
	ok, failed  int64 // completed inside the window
	okLatency   []float64
	errLatency  []float64
	sendLag     []float64
	errors      tally // calls started inside the window
	totalOk     int64
	totalErrors tally
	notSent     int64
	collected   int64
	collectOut  *bufio.Writer
}

func (r *run) request(choice int) []byte {
	req := append([]byte(nil), r.cfg.Requests[choice]...)
	for _, offset := range r.cfg.UUIDOffsets[choice] {
		r.ids.write(req[offset : offset+36])
	}
	return req
}

// call makes one call meant to start at `intended`; it returns when the call ends.
func (r *run) call(choice int, intended time.Time) {
	req := r.request(choice)
	n := atomic.AddInt64(&r.sent, 1)
	conn := r.conns[int(n)%len(r.conns)]
	atomic.AddInt64(&r.inflight, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(r.cfg.DeadlineMs)*time.Millisecond)
	var resp []byte
	err := conn.Invoke(ctx, r.cfg.Method, &req, &resp)
	cancel()
	end := time.Now()
	atomic.AddInt64(&r.inflight, -1)
	r.record(intended, end, err, resp)
}

// record: throughput counts completions inside the window; latency and the error tally
// cover calls started inside it, however late they end.
func (r *run) record(startT, end time.Time, err error, resp []byte) {
	started := !startT.Before(r.windowStart) && startT.Before(r.windowEnd)
	completed := !end.Before(r.windowStart) && !end.After(r.windowEnd)
	latency := float64(end.Sub(startT).Nanoseconds()) / 1e6
	var found []string
	if err == nil && r.cfg.Collect != nil {
		found = stringsAt(resp, r.cfg.Collect.FieldPath, nil)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		st := status.Convert(err)
		code := codeNames[st.Code()]
		if code == "" {
			code = fmt.Sprint(int(st.Code()))
		}
		reason := errorReason(st)
		r.totalErrors.add(code, reason, st.Message())
		if completed {
			r.failed++
		}
		if started {
			r.errors.add(code, reason, st.Message())
			r.errLatency = append(r.errLatency, latency)
		}
		return
	}
	r.totalOk++
	if completed {
		r.ok++
	}
	if started {
		r.okLatency = append(r.okLatency, latency)
	}
	for _, id := range found {
		r.collectOut.WriteString(id)
		r.collectOut.WriteByte('\n')
		r.collected++
	}
}

func (r *run) closedLoop() {
	var wg sync.WaitGroup
	for w := 0; w < r.cfg.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			pick := picker(len(r.cfg.Requests), r.cfg.Distrib, rand.New(rand.NewSource(r.cfg.Seed+int64(w))))
			for time.Now().Before(r.windowEnd) {
				r.call(pick(), time.Now())
			}
		}(w)
	}
	wg.Wait()
}

func (r *run) openLoop() {
	pick := picker(len(r.cfg.Requests), r.cfg.Distrib, rand.New(rand.NewSource(r.cfg.Seed)))
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	var wg sync.WaitGroup
	for i := int64(0); ; i++ {
		intended := r.start.Add(time.Duration(i) * interval)
		if !intended.Before(r.windowEnd) {
			break
		}
		if wait := time.Until(intended); wait > 0 {
			time.Sleep(wait)
		}
		now := time.Now()
		if !intended.Before(r.windowStart) {
			lag := float64(now.Sub(intended).Nanoseconds()) / 1e6
			r.mu.Lock()
			r.sendLag = append(r.sendLag, lag)
			r.mu.Unlock()
		}
		if atomic.LoadInt64(&r.inflight) >= r.cfg.MaxInflight {
			r.mu.Lock()
			r.notSent++
			r.mu.Unlock()
			continue
		}
		choice := pick()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.call(choice, intended)
		}()
	}
	wg.Wait()
}

func cpuSeconds() (user, system float64) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()) / 1e9, float64(ru.Stime.Nano()) / 1e9
}

func (r *run) execute() (summary, error) {
	encoding.RegisterCodec(rawCodec{})
	transport, err := r.cfg.transport()
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	for i := 0; i < r.cfg.Channels; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := grpc.DialContext(ctx, r.cfg.Target, transport, grpc.WithBlock(),
			grpc.WithDefaultCallOptions(grpc.CallContentSubtype("raw"), grpc.MaxCallRecvMsgSize(256<<20)))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", r.cfg.Target, err)
		}
		r.conns = append(r.conns, conn)
	}
	if r.cfg.Collect != nil {
		f, err := os.Create(r.cfg.Collect.File)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r.collectOut = bufio.NewWriterSize(f, 1<<20)
	}
	user0, sys0 := cpuSeconds()
	r.start = time.Now()
	r.windowStart = r.start.Add(time.Duration(r.cfg.WarmupS * float64(time.Second)))
	r.windowEnd = r.windowStart.Add(time.Duration(r.cfg.DurationS * float64(time.Second)))
	// The driver times its CPU samples of the measured window from this line.
	fmt.Println("started")
	switch r.cfg.Mode {
	case "closed":
		r.closedLoop()
	case "open":
		r.openLoop()
	default:
		return nil, fmt.Errorf("unknown mode %q", r.cfg.Mode)
	}
	wall := time.Since(r.start).Seconds()
	user1, sys1 := cpuSeconds()
	for _, conn := range r.conns {
		conn.Close()
	}
	if r.collectOut != nil {
		if err := r.collectOut.Flush(); err != nil {
			return nil, err
		}
	}
	window := r.cfg.DurationS
	var concurrency, rate interface{}
	if r.cfg.Mode == "closed" {
		concurrency = r.cfg.Concurrency
	} else {
		rate = r.cfg.Rate
	}
	return summary{
		"mode":             r.cfg.Mode,
		"concurrency":      concurrency,
		"target_rate":      rate,
		"window_s":         window,
		"ok":               r.ok,
		"failed":           r.failed,
		"errors":           r.errors,
		"rps":              float64(r.ok) / window,
		"completed_rps":    float64(r.ok+r.failed) / window,
		"latency_ms":       summarize(r.okLatency),
		"error_latency_ms": summarize(r.errLatency),
		"send_lag_ms":      summarize(r.sendLag),
		"total": summary{
			"sent": r.sent, "ok": r.totalOk, "failed": r.totalErrors.total(),
			"not_sent": r.notSent, "errors": r.totalErrors,
		},
		"collected": r.collected,
		"cpu": summary{
			"user_s": user1 - user0, "system_s": sys1 - sys0,
			"total_s": user1 - user0 + sys1 - sys0, "wall_s": wall,
			"procs": runtime.GOMAXPROCS(0),
		},
	}, nil
}

func load(path string) (config, error) {
	cfg := config{Concurrency: 64, Channels: 4, DeadlineMs: 5000, MaxInflight: 100000, Procs: 1, Seed: 1}
	raw, err := os.ReadFile(path)
	if err != nil {
		return cfg, err
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return cfg, err
	}
	if len(cfg.Requests) == 0 || len(cfg.Requests) != len(cfg.UUIDOffsets) {
		return cfg, fmt.Errorf("need one uuid_offsets list per request")
	}
	if cfg.Mode == "open" && cfg.Rate <= 0 {
		return cfg, fmt.Errorf("an open loop needs a rate")
	}
	if cfg.Channels < 1 {
		cfg.Channels = 1
	}
	return cfg, nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: generator CONFIG.json OUT.json")
		os.Exit(2)
	}
	cfg, err := load(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "generator:", err)
		os.Exit(2)
	}
	if cfg.Procs > 0 {
		runtime.GOMAXPROCS(cfg.Procs)
	}
	r := &run{cfg: cfg, ids: newUUIDs(), errors: tally{}, totalErrors: tally{}}
	out, err := r.execute()
	if err != nil {
		fmt.Fprintln(os.Stderr, "generator:", err)
		os.Exit(1)
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		fmt.Fprintln(os.Stderr, "generator:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Args[2], data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "generator:", err)
		os.Exit(1)
	}
}
