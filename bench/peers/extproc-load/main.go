// Command extproc-load is bench/peers' load client for Endpoint Pickers: it plays Envoy's ext_proc filter with Envoy's
// own generated API (github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3), the same client for
// pd-router's EPP and for llm-d's, so the figures compare the servers and not two clients.
//
// Each of -streams lanes sends one request after another, each on its own ext_proc stream as Envoy does with
// FULL_DUPLEX_STREAMED bodies: the request headers, the body in -chunk-byte chunks (the last with end_of_stream), then
// it waits for the EPP's answer: the headers response (with the destination header) and the streamed body ending in
// end_of_stream, or an immediate response (an error here). The decision latency is the time from opening the stream
// to that last body chunk: what Envoy waits before it can forward the request. Then the lane half-closes the stream
// and waits for the server to end it, as Envoy does when the HTTP stream ends.
//
// Requests started in the first -warmup are not counted (connection setup, JIT, a resumed EPP's first scrape);
// requests started in the following -duration are. Bounded by -max-requests and a per-request -timeout.
//
// Prompts of about -tokens tokens (4 bytes each): -shared of each prompt is one of -prefixes seeded prefixes (as a
// system prompt), the rest is unique to the request and the run (-nonce), so the prefix index holds real content and
// grows while the decisions stay comparable across EPPs.
//
// Prints one JSON report on stdout. Bench tooling, not product code.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

var words = strings.Fields("the quick brown fox jumps over lazy dog while seven wizards quietly judge boxing matches in old towns")

func text(r *rand.Rand, bytes int) string {
	var b strings.Builder
	b.Grow(bytes + 16)
	for b.Len() < bytes {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()[:bytes]
}

type config struct {
	addr        string
	streams     int
	warmup      time.Duration
	duration    time.Duration
	maxRequests int64
	tokens      int
	prefixes    int
	shared      float64
	seed        uint64
	nonce       string
	chunk       int
	api         string
	model       string
	timeout     time.Duration
}

type report struct {
	Streams        int            `json:"streams"`
	Tokens         int            `json:"tokens"`
	BodyBytes      int            `json:"bodyBytes"`
	WarmupRequests int64          `json:"warmupRequests"`
	WarmupErrors   int64          `json:"warmupErrors"`
	Requests       int            `json:"requests"`
	Errors         int64          `json:"errors"`
	ErrorSamples   []string       `json:"errorSamples"`
	ElapsedMs      float64        `json:"elapsedMs"`
	PerSecond      float64        `json:"perSecond"`
	Prefill        int            `json:"prefill"`
	Destinations   map[string]int `json:"destinations"`
	LatenciesUs    []int64        `json:"latenciesUs"`
	GoAPI          string         `json:"goApi"`
}

type result struct {
	latency     time.Duration
	destination string
	prefill     bool
}

type generator struct {
	cfg      *config
	prefixes []string
	suffix   int
}

func newGenerator(cfg *config) *generator {
	r := rand.New(rand.NewPCG(cfg.seed, 0))
	total := cfg.tokens * 4
	sharedBytes := int(float64(total) * cfg.shared)
	g := &generator{cfg: cfg, suffix: total - sharedBytes}
	for i := 0; i < cfg.prefixes; i++ {
		g.prefixes = append(g.prefixes, text(r, sharedBytes))
	}
	return g
}

type completionBody struct {
	Model     string `json:"model"`
	Prompt    string `json:"prompt"`
	MaxTokens int    `json:"max_tokens"`
}

type chatBody struct {
	Model     string              `json:"model"`
	Messages  []map[string]string `json:"messages"`
	MaxTokens int                 `json:"max_tokens"`
}

// body of request n, drawn with the lane's generator.
func (g *generator) body(r *rand.Rand, lane int, n int64) []byte {
	prefix := ""
	if len(g.prefixes) > 0 {
		prefix = g.prefixes[r.IntN(len(g.prefixes))]
	}
	unique := fmt.Sprintf("request %s-%d-%d ", g.cfg.nonce, lane, n)
	suffix := unique + text(r, max(0, g.suffix-len(unique)))
	var out []byte
	if g.cfg.api == "chat" {
		out, _ = json.Marshal(chatBody{Model: g.cfg.model, Messages: []map[string]string{{"role": "user", "content": prefix + suffix}}, MaxTokens: 64})
	} else {
		out, _ = json.Marshal(completionBody{Model: g.cfg.model, Prompt: prefix + suffix, MaxTokens: 64})
	}
	return out
}

func headerValue(c *extprocv3.CommonResponse, key string) string {
	for _, h := range c.GetHeaderMutation().GetSetHeaders() {
		if strings.EqualFold(h.GetHeader().GetKey(), key) {
			if raw := h.GetHeader().GetRawValue(); len(raw) > 0 {
				return string(raw)
			}
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

func oneRequest(ctx context.Context, client extprocv3.ExternalProcessorClient, cfg *config, path string, id string, body []byte) (result, error) {
	var res result
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	start := time.Now()
	stream, err := client.Process(ctx)
	if err != nil {
		return res, fmt.Errorf("opening the stream: %w", err)
	}
	hs := [][2]string{
		{":authority", "bench.local"}, {":path", path}, {":method", "POST"}, {":scheme", "http"},
		{"content-type", "application/json"}, {"content-length", strconv.Itoa(len(body))}, {"x-request-id", id},
		{"user-agent", "pd-router-bench-peers"},
	}
	hm := &corev3.HeaderMap{}
	for _, h := range hs {
		// Envoy sends header values as raw_value bytes.
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])})
	}
	if err := stream.Send(&extprocv3.ProcessingRequest{
		// Envoy announces its processing mode on the first message of a stream.
		ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_FULL_DUPLEX_STREAMED, ResponseBodyMode: filterv3.ProcessingMode_FULL_DUPLEX_STREAMED},
		Request:        &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hm}},
	}); err != nil {
		return res, fmt.Errorf("sending headers: %w", err)
	}
	for off := 0; off < len(body); off += cfg.chunk {
		end := min(off+cfg.chunk, len(body))
		if err := stream.Send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: body[off:end], EndOfStream: end == len(body)},
		}}); err != nil {
			return res, fmt.Errorf("sending the body: %w", err)
		}
	}
	for done := false; !done; {
		resp, err := stream.Recv()
		if err != nil {
			return res, fmt.Errorf("awaiting the decision: %w", err)
		}
		switch v := resp.GetResponse().(type) {
		case *extprocv3.ProcessingResponse_ImmediateResponse:
			return res, fmt.Errorf("immediate response %d: %.200s", v.ImmediateResponse.GetStatus().GetCode(), v.ImmediateResponse.GetBody())
		case *extprocv3.ProcessingResponse_RequestHeaders:
			c := v.RequestHeaders.GetResponse()
			res.destination = headerValue(c, "x-gateway-destination-endpoint")
			res.prefill = headerValue(c, "x-prefiller-host-port") != ""
		case *extprocv3.ProcessingResponse_RequestBody:
			if sr := v.RequestBody.GetResponse().GetBodyMutation().GetStreamedResponse(); sr != nil && sr.GetEndOfStream() {
				done = true
			}
		}
	}
	res.latency = time.Since(start)
	if res.destination == "" {
		return res, errors.New("no x-gateway-destination-endpoint in the headers response")
	}
	// Envoy half-closes when the HTTP stream is done; the server then ends the RPC.
	if err := stream.CloseSend(); err != nil {
		return res, fmt.Errorf("half-closing: %w", err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return res, nil
			}
			return res, fmt.Errorf("awaiting the end of the stream: %w", err)
		}
	}
}

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "", "ext_proc server host:port (plain text gRPC)")
	flag.IntVar(&cfg.streams, "streams", 1, "concurrent lanes, each one stream at a time")
	flag.DurationVar(&cfg.warmup, "warmup", time.Second, "requests started in this first period are not counted")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured period after the warm-up")
	flag.Int64Var(&cfg.maxRequests, "max-requests", 1_000_000, "most requests in all (warm-up included)")
	flag.IntVar(&cfg.tokens, "tokens", 1024, "prompt size in estimated tokens (4 bytes each)")
	flag.IntVar(&cfg.prefixes, "prefixes", 32, "shared prompt prefixes")
	flag.Float64Var(&cfg.shared, "shared", 0.75, "share of each prompt taken by a shared prefix")
	flag.Uint64Var(&cfg.seed, "seed", 42, "seed of the prompt text")
	flag.StringVar(&cfg.nonce, "nonce", "0", "makes this run's unique suffixes differ from other runs'")
	flag.IntVar(&cfg.chunk, "chunk", 16384, "request body chunk size in bytes")
	flag.StringVar(&cfg.api, "api", "completions", "completions or chat")
	flag.StringVar(&cfg.model, "model", "bench-model", "model name in the bodies")
	flag.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "deadline of one request")
	flag.Parse()
	if cfg.addr == "" || cfg.streams < 1 || cfg.chunk < 1 || cfg.tokens < 1 || (cfg.api != "completions" && cfg.api != "chat") || cfg.shared < 0 || cfg.shared >= 1 {
		fmt.Fprintln(os.Stderr, "usage: extproc-load -addr host:port [-streams n] [-warmup d] [-duration d] [-tokens n] [-api completions|chat] ...")
		os.Exit(2)
	}
	path := "/v1/completions"
	if cfg.api == "chat" {
		path = "/v1/chat/completions"
	}
	conn, err := grpc.NewClient(cfg.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dialing:", err)
		os.Exit(1)
	}
	defer conn.Close()
	client := extprocv3.NewExternalProcessorClient(conn)
	gen := newGenerator(&cfg)

	start := time.Now()
	measureFrom := start.Add(cfg.warmup)
	end := measureFrom.Add(cfg.duration)
	var started, warmup, warmupErrors, errCount atomic.Int64
	var mu sync.Mutex
	var results []result
	var samples []string
	bodyBytes := 0
	var wg sync.WaitGroup
	for lane := 0; lane < cfg.streams; lane++ {
		wg.Add(1)
		go func(lane int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(cfg.seed, uint64(lane)+1))
			var mine []result
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				n := started.Add(1)
				if n > cfg.maxRequests {
					break
				}
				body := gen.body(r, lane, n)
				res, err := oneRequest(context.Background(), client, &cfg, path, fmt.Sprintf("bench-%s-%d", cfg.nonce, n), body)
				inWarmup := t0.Before(measureFrom)
				if inWarmup {
					warmup.Add(1)
				}
				if err != nil {
					if inWarmup {
						warmupErrors.Add(1)
					} else {
						errCount.Add(1)
					}
					mu.Lock()
					if len(samples) < 5 {
						samples = append(samples, err.Error())
					}
					mu.Unlock()
					continue
				}
				if inWarmup {
					continue
				}
				mine = append(mine, res)
				if lane == 0 && bodyBytes == 0 {
					bodyBytes = len(body)
				}
			}
			mu.Lock()
			results = append(results, mine...)
			mu.Unlock()
		}(lane)
	}
	wg.Wait()
	elapsed := time.Since(measureFrom)
	if elapsed > cfg.duration {
		// Requests started inside the window; the window is what they had, not the time the last one took to finish.
		elapsed = cfg.duration
	}
	rep := report{Streams: cfg.streams, Tokens: cfg.tokens, BodyBytes: bodyBytes, WarmupRequests: warmup.Load(), WarmupErrors: warmupErrors.Load(), Requests: len(results), Errors: errCount.Load(),
		ErrorSamples: samples, ElapsedMs: float64(elapsed.Microseconds()) / 1000, Destinations: map[string]int{}, LatenciesUs: make([]int64, 0, len(results)), GoAPI: goAPIVersion()}
	if rep.ErrorSamples == nil {
		rep.ErrorSamples = []string{}
	}
	for _, r := range results {
		rep.LatenciesUs = append(rep.LatenciesUs, r.latency.Microseconds())
		rep.Destinations[r.destination]++
		if r.prefill {
			rep.Prefill++
		}
	}
	sort.Slice(rep.LatenciesUs, func(i, j int) bool { return rep.LatenciesUs[i] < rep.LatenciesUs[j] })
	rep.PerSecond = float64(rep.Requests) / elapsed.Seconds()
	out, _ := json.Marshal(rep)
	fmt.Println(string(out))
}

// goAPIVersion names the go-control-plane module version compiled in (from the build info).
func goAPIVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range info.Deps {
		if d.Path == "github.com/envoyproxy/go-control-plane/envoy" {
			return d.Path + "@" + d.Version
		}
	}
	return "unknown"
}
