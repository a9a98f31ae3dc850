// Prints, as JSON, every EPP metric family that llm-d-inference-scheduler v0.7.1 registers: GAIE v1.4.0's
// pkg/epp/metrics (plus its inference pool collector) and v0.7.1's own pkg/metrics. The interop suite compares
// pd-router's GAIE-named metrics against this, so names, types, help, label names and buckets come from upstream's
// own code rather than from a transcription.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	schedmetrics "github.com/llm-d/llm-d-inference-scheduler/pkg/metrics"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/metrics"
	"sigs.k8s.io/gateway-api-inference-extension/pkg/epp/metrics/collectors"
)

type family struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	Help    string    `json:"help"`
	Labels  []string  `json:"labels"`
	Buckets []float64 `json:"buckets,omitempty"`
}

func main() {
	metrics.Register(schedmetrics.GetCollectors()...)
	ctx := context.Background()
	t0 := time.Now()
	t1 := t0.Add(time.Second)
	// One observation through every recorder, so each vector has a child to gather.
	metrics.RecordRequestCounter("m", "t")
	metrics.RecordRequestErrCounter("m", "t", "c")
	metrics.RecordRequestSizes("m", "t", 1)
	metrics.RecordRequestLatencies(ctx, "m", "t", t0, t1)
	metrics.RecordRequestTPOT(ctx, "m", "t", 1)
	metrics.RecordRequestTPOTWithSLO(ctx, "m", "t", 2, 1)
	metrics.RecordRequestPredictedTPOT(ctx, "m", "t", 1)
	metrics.RecordRequestTPOTPredictionDuration(ctx, "m", "t", 1)
	metrics.RecordRequestTTFT(ctx, "m", "t", 1)
	metrics.RecordRequestPredictedTTFT(ctx, "m", "t", 1)
	metrics.RecordRequestTTFTPredictionDuration(ctx, "m", "t", 1)
	metrics.RecordResponseSizes("m", "t", 1)
	metrics.RecordInputTokens("m", "t", 1)
	metrics.RecordOutputTokens("m", "t", 1)
	metrics.RecordPromptCachedTokens("m", "t", 1)
	metrics.RecordNormalizedTimePerOutputToken(ctx, "m", "t", t0, t1, 1)
	metrics.IncRunningRequests("m")
	metrics.RecordInferencePoolAvgKVCache("p", 1)
	metrics.RecordInferencePoolAvgQueueSize("p", 1)
	metrics.RecordInferencePoolReadyPods("p", 1)
	metrics.RecordSchedulerE2ELatency(time.Millisecond)
	metrics.RecordSchedulerAttempt(nil)
	metrics.RecordSchedulerAttempt(errors.New("x"))
	metrics.RecordPluginProcessingLatency("e", "t", "n", time.Millisecond)
	metrics.RecordPrefixCacheSize(1)
	metrics.RecordPrefixCacheMatch(1, 2)
	metrics.RecordInferenceExtensionInfo("c", "b")
	metrics.RecordFlowControlRequestQueueDuration("f", "0", "o", "p", "m", "t", time.Millisecond)
	metrics.RecordFlowControlDispatchCycleDuration(time.Millisecond)
	metrics.RecordFlowControlRequestEnqueueDuration("0", "o", time.Millisecond)
	metrics.IncFlowControlQueueSize("f", "0", "p", "m", "t")
	metrics.AddFlowControlQueueBytes("f", "0", "p", "m", "t", 1)
	metrics.RecordInferenceModelRewriteDecision("r", "m", "t")
	schedmetrics.RecordPDDecision("m", schedmetrics.DecisionTypeDecodeOnly)
	schedmetrics.RecordDisaggDecision("m", schedmetrics.DecisionTypeDecodeOnly)

	gathered, err := crmetrics.Registry.Gather()
	if err != nil {
		panic(err)
	}
	var out []family
	prefix := regexp.MustCompile(`^(inference_objective_|inference_pool_|inference_extension_|llm_d_inference_scheduler_)`)
	for _, mf := range gathered {
		if !prefix.MatchString(mf.GetName()) {
			continue
		}
		out = append(out, describe(mf))
	}
	// The per-pod queue gauge is a collector over the datastore: its descriptor gives name, help and labels; it
	// sends GaugeValue metrics (collectors/inference_pool.go).
	descs := make(chan *prometheus.Desc, 4)
	collectors.NewInferencePoolMetricsCollector(nil).Describe(descs)
	close(descs)
	for d := range descs {
		out = append(out, fromDesc(d, "gauge"))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		panic(err)
	}
}

func describe(mf *dto.MetricFamily) family {
	f := family{Name: mf.GetName(), Type: map[dto.MetricType]string{dto.MetricType_COUNTER: "counter", dto.MetricType_GAUGE: "gauge", dto.MetricType_HISTOGRAM: "histogram"}[mf.GetType()], Help: mf.GetHelp(), Labels: []string{}}
	m := mf.GetMetric()[0]
	for _, l := range m.GetLabel() {
		f.Labels = append(f.Labels, l.GetName())
	}
	sort.Strings(f.Labels)
	if h := m.GetHistogram(); h != nil {
		for _, b := range h.GetBucket() {
			f.Buckets = append(f.Buckets, b.GetUpperBound())
		}
	}
	return f
}

var descPattern = regexp.MustCompile(`fqName: "([^"]+)", help: "([^"]*)", constLabels: \{[^}]*\}, variableLabels: \{([^}]*)\}`)

func fromDesc(d *prometheus.Desc, typ string) family {
	m := descPattern.FindStringSubmatch(d.String())
	if m == nil {
		panic("unexpected descriptor: " + d.String())
	}
	labels := []string{}
	for _, l := range regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`).FindAllString(m[3], -1) {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	return family{Name: m[1], Type: typ, Help: m[2], Labels: labels}
}
