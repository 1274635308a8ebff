package web

import (
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the server's Prometheus metrics, in their own registry (no
// global state). Every method is safe on a nil *Metrics, so packages can
// take an optional one.
type Metrics struct {
	registry     *prometheus.Registry
	connections  *prometheus.CounterVec
	deliveries   *prometheus.CounterVec
	authFailures *prometheus.CounterVec
	queueSize    atomic.Pointer[func() int64]
	storeSize    atomic.Pointer[func() int64]
}

// NewMetrics registers the mailctl metrics and the Go/process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mailctl", Name: "connections_total",
			Help: "Connections accepted, by service (smtp, submission, submissions, imap, imaps, https).",
		}, []string{"service"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mailctl", Name: "deliveries_total",
			Help: "Messages delivered to local mailboxes or refused, by result (delivered, rejected, failed).",
		}, []string{"result"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mailctl", Name: "auth_failures_total",
			Help: "Failed logins, by service.",
		}, []string{"service"}),
	}
	queueSize := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "mailctl", Name: "queue_messages",
		Help: "Messages waiting in the outbound queue.",
	}, func() float64 {
		if f := m.queueSize.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	storeSize := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "mailctl", Name: "store_bytes",
		Help: "Bytes used on disk by the mail store.",
	}, func() float64 {
		if f := m.storeSize.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	m.registry.MustRegister(m.connections, m.deliveries, m.authFailures, queueSize, storeSize,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Connection counts one accepted connection on service.
func (m *Metrics) Connection(service string) {
	if m != nil {
		m.connections.WithLabelValues(service).Inc()
	}
}

// Delivery counts one message with result "delivered", "rejected" or "failed".
func (m *Metrics) Delivery(result string) {
	if m != nil {
		m.deliveries.WithLabelValues(result).Inc()
	}
}

// AuthFailure counts one failed login on service.
func (m *Metrics) AuthFailure(service string) {
	if m != nil {
		m.authFailures.WithLabelValues(service).Inc()
	}
}

// SetQueueSize sets the number of queued outbound messages.
func (m *Metrics) SetQueueSize(n int) {
	m.SetQueueSizeFunc(func() int64 { return int64(n) })
}

// SetQueueSizeFunc sets the function that reports the number of queued
// outbound messages at scrape time.
func (m *Metrics) SetQueueSizeFunc(f func() int64) {
	if m != nil {
		m.queueSize.Store(&f)
	}
}

// SetStoreSize sets the function that reports the store's size in bytes
// at scrape time.
func (m *Metrics) SetStoreSize(f func() int64) {
	if m != nil {
		m.storeSize.Store(&f)
	}
}

// Registry returns the registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}
