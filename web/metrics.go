package web

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, on /metrics.
type metrics struct {
	registry     *prometheus.Registry
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	proposals    *prometheus.CounterVec
	certificates prometheus.Counter
	executions   *prometheus.CounterVec
	duration     prometheus.Histogram
	// refused counts refused authentications by reason (missing,
	// unknown): a probe for tokens shows here.
	refused *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "seb_http_requests_total", Help: "API requests by route and status."},
			[]string{"method", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "seb_http_request_duration_seconds", Help: "API request latency by route.",
			Buckets: prometheus.DefBuckets}, []string{"method", "route"}),
		proposals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "seb_proposals_total", Help: "Proposals admitted, by their state after seb's plan (pending, diverged, certified)."},
			[]string{"state"}),
		certificates: prometheus.NewCounter(prometheus.CounterOpts{Name: "seb_certificates_issued_total", Help: "Certificates issued."}),
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "seb_executions_total", Help: "Executions by outcome; refused ones are live plans that were not the certified diff."},
			[]string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "seb_execution_duration_seconds", Help: "Execution duration, from start to outcome.",
			Buckets: []float64{1, 2, 5, 10, 30, 60, 120, 300, 600, 1800}}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "seb_auth_refused_total", Help: "API requests refused for their token, by reason (missing, unknown)."},
			[]string{"reason"}),
	}
	m.registry.MustRegister(m.requests, m.latency, m.proposals, m.certificates, m.executions, m.duration, m.refused,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// observe counts requests by their route pattern, not their path, so ids
// do not explode the label set.
func (m *metrics) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		status := c.Response().Status
		if err != nil {
			c.Error(err)
			status = c.Response().Status
		}
		method, route := labels(c)
		m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
		m.latency.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
		return nil
	}
}

// labels bounds the label values a client controls: a method seb does not
// serve is "OTHER", and a path no route matched is "unmatched" (echo names
// a near miss by the pattern of the route it nearly matched, a bounded set).
func labels(c echo.Context) (method, route string) {
	method = c.Request().Method
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, "LOCK", "UNLOCK":
	default:
		method = "OTHER"
	}
	route = c.Path()
	if route == "" {
		route = "unmatched"
	}
	return method, route
}

func (m *metrics) handler() echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
}
