// Command extproc-client plays Envoy against an ext_proc server (the pd-router EPP) using Envoy's own generated API,
// github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3, with FULL_DUPLEX_STREAMED request and response
// bodies, the way Envoy's ext_proc filter drives an Endpoint Picker.
//
// It reads a JSON spec from stdin (the address and a list of exchanges), runs each exchange on its own stream and
// prints a JSON report on stdout: every ProcessingResponse received, summarised (header mutations with decoded
// values, dynamic metadata as JSON, streamed body chunks, immediate responses), plus the problems found by the Go API
// itself: fields Go could not decode (unknown fields: a sign the server's protos differ from Envoy's) and the
// protoc-gen-validate constraints Envoy enforces (ValidateAll). It exits 1 on a transport error or a timeout, 0
// otherwise; the calling test asserts on the report.
//
// This is test tooling for pd-router's interop suite, not product code.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Exchange is one HTTP request/response as Envoy would see it.
type Exchange struct {
	Name string `json:"name"`
	// Request headers in order, pseudo-headers included (":method", ":path", ":authority", ":scheme").
	RequestHeaders [][2]string `json:"requestHeaders"`
	// Request body chunks as Envoy would forward them; the last one carries end_of_stream. Empty: header-only request.
	RequestBodyChunks []string `json:"requestBodyChunks"`
	// Response headers (":status" first) sent after the request phase, unless the EPP answered immediately.
	ResponseHeaders [][2]string `json:"responseHeaders,omitempty"`
	// Response body chunks; the last one carries end_of_stream.
	ResponseBodyChunks []string `json:"responseBodyChunks,omitempty"`
	// Wait for each response chunk to be echoed before sending the next (streaming responses are echoed at once).
	AwaitEachResponseChunk bool `json:"awaitEachResponseChunk,omitempty"`
}

type Spec struct {
	Address   string     `json:"address"`
	TimeoutMs int        `json:"timeoutMs"`
	Exchanges []Exchange `json:"exchanges"`
}

type Header struct {
	Key          string `json:"key"`
	Value        string `json:"value"`
	UsesRawValue bool   `json:"usesRawValue"`
	AppendAction string `json:"appendAction"`
}

type Received struct {
	Kind string `json:"kind"`
	// CommonResponse of headers/body responses.
	Status          string          `json:"status,omitempty"`
	ClearRouteCache bool            `json:"clearRouteCache,omitempty"`
	SetHeaders      []Header        `json:"setHeaders,omitempty"`
	RemoveHeaders   []string        `json:"removeHeaders,omitempty"`
	BodyMutation    string          `json:"bodyMutation,omitempty"`
	StreamedBody    *string         `json:"streamedBody,omitempty"`
	StreamedEOS     bool            `json:"streamedEndOfStream,omitempty"`
	DynamicMetadata json.RawMessage `json:"dynamicMetadata,omitempty"`
	// ImmediateResponse.
	HTTPStatus int32  `json:"httpStatus,omitempty"`
	Body       string `json:"body,omitempty"`
	Details    string `json:"details,omitempty"`
}

type Report struct {
	Name             string     `json:"name"`
	Received         []Received `json:"received"`
	GrpcCode         string     `json:"grpcCode"`
	GrpcMessage      string     `json:"grpcMessage"`
	UnknownFields    []string   `json:"unknownFields"`
	ValidationErrors []string   `json:"validationErrors"`
	Error            string     `json:"error,omitempty"`
}

func headerMap(hs [][2]string) *corev3.HeaderMap {
	m := &corev3.HeaderMap{}
	for _, h := range hs {
		// Envoy sends header values as raw_value bytes.
		m.Headers = append(m.Headers, &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])})
	}
	return m
}

// unknownFields lists the paths of fields the Go API did not recognise, recursively.
func unknownFields(m protoreflect.Message, path string, out *[]string) {
	if len(m.GetUnknown()) > 0 {
		*out = append(*out, fmt.Sprintf("%s (%s): %d unknown bytes", path, m.Descriptor().FullName(), len(m.GetUnknown())))
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				unknownFields(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), out)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				unknownFields(mv.Message(), fmt.Sprintf("%s[%s]", p, k.String()), out)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			unknownFields(v.Message(), p, out)
		}
		return true
	})
}

func summariseCommon(r *Received, c *extprocv3.CommonResponse) {
	if c == nil {
		return
	}
	r.Status = c.GetStatus().String()
	r.ClearRouteCache = c.GetClearRouteCache()
	for _, h := range c.GetHeaderMutation().GetSetHeaders() {
		v := h.GetHeader().GetValue()
		raw := len(h.GetHeader().GetRawValue()) > 0
		if raw {
			v = string(h.GetHeader().GetRawValue())
		}
		r.SetHeaders = append(r.SetHeaders, Header{Key: h.GetHeader().GetKey(), Value: v, UsesRawValue: raw, AppendAction: h.GetAppendAction().String()})
	}
	r.RemoveHeaders = c.GetHeaderMutation().GetRemoveHeaders()
	if bm := c.GetBodyMutation(); bm != nil {
		switch m := bm.GetMutation().(type) {
		case *extprocv3.BodyMutation_StreamedResponse:
			r.BodyMutation = "streamed_response"
			b := string(m.StreamedResponse.GetBody())
			r.StreamedBody = &b
			r.StreamedEOS = m.StreamedResponse.GetEndOfStream()
		case *extprocv3.BodyMutation_Body:
			r.BodyMutation = "body"
		case *extprocv3.BodyMutation_ClearBody:
			r.BodyMutation = "clear_body"
		}
	}
}

func summarise(resp *extprocv3.ProcessingResponse) Received {
	var r Received
	switch v := resp.GetResponse().(type) {
	case *extprocv3.ProcessingResponse_RequestHeaders:
		r.Kind = "request_headers"
		summariseCommon(&r, v.RequestHeaders.GetResponse())
	case *extprocv3.ProcessingResponse_RequestBody:
		r.Kind = "request_body"
		summariseCommon(&r, v.RequestBody.GetResponse())
	case *extprocv3.ProcessingResponse_RequestTrailers:
		r.Kind = "request_trailers"
	case *extprocv3.ProcessingResponse_ResponseHeaders:
		r.Kind = "response_headers"
		summariseCommon(&r, v.ResponseHeaders.GetResponse())
	case *extprocv3.ProcessingResponse_ResponseBody:
		r.Kind = "response_body"
		summariseCommon(&r, v.ResponseBody.GetResponse())
	case *extprocv3.ProcessingResponse_ResponseTrailers:
		r.Kind = "response_trailers"
	case *extprocv3.ProcessingResponse_ImmediateResponse:
		r.Kind = "immediate_response"
		r.HTTPStatus = int32(v.ImmediateResponse.GetStatus().GetCode())
		r.Body = string(v.ImmediateResponse.GetBody())
		r.Details = v.ImmediateResponse.GetDetails()
		for _, h := range v.ImmediateResponse.GetHeaders().GetSetHeaders() {
			val := h.GetHeader().GetValue()
			raw := len(h.GetHeader().GetRawValue()) > 0
			if raw {
				val = string(h.GetHeader().GetRawValue())
			}
			r.SetHeaders = append(r.SetHeaders, Header{Key: h.GetHeader().GetKey(), Value: val, UsesRawValue: raw, AppendAction: h.GetAppendAction().String()})
		}
	default:
		r.Kind = "none"
	}
	if md := resp.GetDynamicMetadata(); md != nil {
		if b, err := protojson.Marshal(md); err == nil {
			r.DynamicMetadata = b
		}
	}
	return r
}

type session struct {
	stream grpc.BidiStreamingClient[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]
	report *Report
	first  bool
}

func (s *session) send(req *extprocv3.ProcessingRequest) error {
	if s.first {
		// Envoy announces its processing mode on the first message of a stream.
		req.ProtocolConfig = &extprocv3.ProtocolConfiguration{
			RequestBodyMode:  filterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
			ResponseBodyMode: filterv3.ProcessingMode_FULL_DUPLEX_STREAMED,
		}
		s.first = false
	}
	return s.stream.Send(req)
}

func (s *session) recv() (*extprocv3.ProcessingResponse, error) {
	resp, err := s.stream.Recv()
	if err != nil {
		return nil, err
	}
	unknownFields(resp.ProtoReflect(), "ProcessingResponse", &s.report.UnknownFields)
	if verr := resp.ValidateAll(); verr != nil {
		s.report.ValidationErrors = append(s.report.ValidationErrors, verr.Error())
	}
	s.report.Received = append(s.report.Received, summarise(resp))
	return resp, nil
}

// recvUntilEOS receives body responses of one direction until a streamed chunk with end_of_stream (or an immediate
// response).
func (s *session) recvUntilEOS(kind string) (immediate bool, err error) {
	for {
		if _, err := s.recv(); err != nil {
			return false, err
		}
		last := s.report.Received[len(s.report.Received)-1]
		if last.Kind == "immediate_response" {
			return true, nil
		}
		if last.Kind == kind && last.StreamedEOS {
			return false, nil
		}
	}
}

func run(ctx context.Context, client extprocv3.ExternalProcessorClient, ex Exchange) (rep Report) {
	rep = Report{Name: ex.Name, Received: []Received{}, UnknownFields: []string{}, ValidationErrors: []string{}}
	stream, err := client.Process(ctx)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	s := &session{stream: stream, report: &rep, first: true}
	fail := func(err error) Report {
		rep.Error = err.Error()
		if st, ok := status.FromError(err); ok {
			rep.GrpcCode = st.Code().String()
			rep.GrpcMessage = st.Message()
		}
		return rep
	}

	// Request phase: headers, then the body chunks as they arrive (full duplex: nothing waits for the headers reply).
	headerOnly := len(ex.RequestBodyChunks) == 0
	if err := s.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: headerMap(ex.RequestHeaders), EndOfStream: headerOnly},
	}}); err != nil {
		return fail(err)
	}
	for i, c := range ex.RequestBodyChunks {
		if err := s.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: []byte(c), EndOfStream: i == len(ex.RequestBodyChunks)-1},
		}}); err != nil {
			return fail(err)
		}
	}
	// The EPP answers the headers once the whole body is in, then streams the body back.
	first, err := s.recv()
	if err != nil {
		return fail(err)
	}
	immediate := first.GetImmediateResponse() != nil
	if !immediate && !headerOnly {
		if immediate, err = s.recvUntilEOS("request_body"); err != nil {
			return fail(err)
		}
	}

	// Response phase.
	if !immediate && len(ex.ResponseHeaders) > 0 {
		noBody := len(ex.ResponseBodyChunks) == 0
		if err := s.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap(ex.ResponseHeaders), EndOfStream: noBody},
		}}); err != nil {
			return fail(err)
		}
		if _, err := s.recv(); err != nil {
			return fail(err)
		}
		for i, c := range ex.ResponseBodyChunks {
			eos := i == len(ex.ResponseBodyChunks)-1
			if err := s.send(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
				ResponseBody: &extprocv3.HttpBody{Body: []byte(c), EndOfStream: eos},
			}}); err != nil {
				return fail(err)
			}
			if ex.AwaitEachResponseChunk {
				if _, err := s.recv(); err != nil {
					return fail(err)
				}
			}
		}
		if !noBody && !ex.AwaitEachResponseChunk {
			if _, err := s.recvUntilEOS("response_body"); err != nil {
				return fail(err)
			}
		}
	}

	// Envoy half-closes when the HTTP stream is done; the server ends the RPC with OK.
	if err := stream.CloseSend(); err != nil {
		return fail(err)
	}
	for {
		_, err := s.recv()
		if errors.Is(err, io.EOF) {
			rep.GrpcCode = "OK"
			return rep
		}
		if err != nil {
			return fail(err)
		}
	}
}

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "reading the spec:", err)
		os.Exit(2)
	}
	var spec Spec
	if err := json.Unmarshal(in, &spec); err != nil {
		fmt.Fprintln(os.Stderr, "parsing the spec:", err)
		os.Exit(2)
	}
	if spec.TimeoutMs <= 0 {
		spec.TimeoutMs = 10_000
	}
	conn, err := grpc.NewClient(spec.Address, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dialing:", err)
		os.Exit(1)
	}
	defer conn.Close()
	client := extprocv3.NewExternalProcessorClient(conn)
	reports := []Report{}
	code := 0
	for _, ex := range spec.Exchanges {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(spec.TimeoutMs)*time.Millisecond)
		rep := run(ctx, client, ex)
		cancel()
		if rep.Error != "" {
			code = 1
		}
		reports = append(reports, rep)
	}
	out, _ := json.MarshalIndent(map[string]any{"exchanges": reports, "goApi": goAPIVersion()}, "", "  ")
	fmt.Println(string(out))
	os.Exit(code)
}

// goAPIVersion names the go-control-plane module version compiled in (from the build info), for the test log.
func goAPIVersion() string {
	return buildDep("github.com/envoyproxy/go-control-plane/envoy")
}

func buildDep(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range info.Deps {
		if d.Path == path {
			return d.Path + "@" + d.Version
		}
	}
	return "unknown"
}
