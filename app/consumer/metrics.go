package consumer

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the consumer's Prometheus instruments.
type Metrics struct {
	// Processed counts messages stored in the table and deleted from the queue.
	Processed prometheus.Counter
	// Failed counts messages whose processing failed at a stage (table,
	// delete, poison); they are delivered again after the visibility timeout.
	Failed *prometheus.CounterVec
	// Poisoned counts messages moved to the poison queue, by reason.
	Poisoned *prometheus.CounterVec
	// Latency observes the end-to-end latency (srcStamp to processing).
	Latency prometheus.Histogram
	// Dequeued counts messages handed out by the queue.
	Dequeued prometheus.Counter
	// InFlight is the number of dequeued messages not finished yet.
	InFlight prometheus.Gauge
	// Ready is 1 while /readyz reports ready.
	Ready prometheus.Gauge
	// StorageAvailable is 0 while storage is unavailable and dequeuing is paused.
	StorageAvailable prometheus.Gauge
	// Outages counts the times storage became unavailable.
	Outages prometheus.Counter
	// Throttled counts the requests storage answered with throttling (503
	// ServerBusy, 500 OperationTimedOut, 429), by stage; each is retried
	// with backoff.
	Throttled *prometheus.CounterVec
	// ImplausibleStamp counts stored messages whose srcStamp is far in the
	// future or past; their latency is not observed.
	ImplausibleStamp prometheus.Counter
}

// NewMetrics creates the instruments and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Processed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "consumer_messages_processed_total",
			Help: "Messages stored in the table and deleted from the queue.",
		}),
		Failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consumer_messages_failed_total",
			Help: "Messages whose processing failed (they reappear after the visibility timeout), by stage.",
		}, []string{"stage"}),
		Poisoned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consumer_messages_poisoned_total",
			Help: "Messages moved to the poison queue, by reason.",
		}, []string{"reason"}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "consumer_message_latency_seconds",
			Help:    "End-to-end latency from the message's srcStamp to its processing.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}),
		Dequeued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "consumer_messages_dequeued_total",
			Help: "Messages handed out by the queue (including redeliveries).",
		}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "consumer_messages_in_flight",
			Help: "Dequeued messages not finished yet.",
		}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "consumer_ready",
			Help: "1 while the consumer reports ready.",
		}),
		StorageAvailable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "consumer_storage_available",
			Help: "0 while the queue, poison queue or table is unavailable and dequeuing is paused, else 1.",
		}),
		Outages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "consumer_storage_outages_total",
			Help: "Times storage became unavailable (missing table or queue, authorization, 5xx, network).",
		}),
		Throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consumer_storage_throttled_total",
			Help: "Storage requests answered with throttling (503 ServerBusy, 500 OperationTimedOut, 429), by stage; each is retried with exponential backoff.",
		}, []string{"stage"}),
		ImplausibleStamp: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "consumer_messages_implausible_stamp_total",
			Help: "Stored messages whose srcStamp is far in the future or past (not observed as latency).",
		}),
	}
	m.StorageAvailable.Set(1)
	for _, stage := range []string{stageTable, stageDelete, stagePoison} {
		m.Failed.WithLabelValues(stage)
	}
	for _, stage := range []string{stageDequeue, stageTable, stageDelete, stagePoison} {
		m.Throttled.WithLabelValues(stage)
	}
	for _, reason := range []string{"malformed", "over_delivered", "rejected"} {
		m.Poisoned.WithLabelValues(reason)
	}
	for _, c := range []prometheus.Collector{m.Processed, m.Failed, m.Poisoned, m.Latency, m.Dequeued, m.InFlight, m.Ready,
		m.StorageAvailable, m.Outages, m.Throttled, m.ImplausibleStamp} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register consumer metrics: %w", err)
		}
	}
	return m, nil
}
