package runner

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
)

// logBroker records log reports, failing the first fails of them.
type logBroker struct {
	Broker
	mu     sync.Mutex
	fails  int
	chunks [][]byte
	phases []string
}

func (b *logBroker) AppendLog(_ context.Context, _ string, _ int64, phase string, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.fails > 0 {
		b.fails--
		return errors.New("connection refused")
	}
	b.chunks = append(b.chunks, bytes.Clone(data))
	b.phases = append(b.phases, phase)
	return nil
}

func newTestStream(b Broker) *logStream {
	j := &job{r: &Runner{opts: Options{Broker: b, Logger: discard()}}, lease: &broker.Lease{Job: "job-1", Token: 7}, report: context.Background()}
	return newLogStream(j, time.Hour)
}

// TestLogStreamKeepsOrderThroughFailures: chunks that could not be sent
// go out later, ahead of what followed; each report stays under the
// chunk limit; a phase change sends what is pending first.
func TestLogStreamKeepsOrderThroughFailures(t *testing.T) {
	b := &logBroker{fails: 2}
	l := newTestStream(b)
	big := strings.Repeat("x", maxLogChunk+10) + "\n"
	l.Write([]byte("one\n"))
	l.flush() // fails
	l.Write([]byte("two\n"))
	l.flush() // fails
	l.Write([]byte(big))
	l.setPhase("apply")
	l.Write([]byte("three\n"))
	l.close()
	var plan, apply bytes.Buffer
	for i, c := range b.chunks {
		if len(c) > maxLogChunk {
			t.Errorf("chunk %d is %d bytes", i, len(c))
		}
		if b.phases[i] == "plan" {
			plan.Write(c)
		} else {
			apply.Write(c)
		}
	}
	if plan.String() != "one\ntwo\n"+big || apply.String() != "three\n" {
		t.Errorf("plan log %.40q… (%d bytes), apply log %q", plan.String(), plan.Len(), apply.String())
	}
}

// TestLogStreamBounded: a broker that never answers costs at most
// maxLogPending of memory, and the log says what was dropped.
func TestLogStreamBounded(t *testing.T) {
	b := &logBroker{fails: 1 << 30}
	l := newTestStream(b)
	line := strings.Repeat("y", 1023) + "\n"
	// As the ticker would: a flush after every 512 KiB written.
	for i := range 3 * maxLogPending / len(line) {
		l.Write([]byte(line))
		if (i+1)%512 == 0 {
			l.flush()
		}
	}
	l.flush()
	if n := l.pending.Len(); n > maxLogPending+len(line)+200 {
		t.Errorf("%d bytes pending, over the bound %d", n, maxLogPending)
	}
	if !strings.Contains(l.pending.String(), "part of the log was dropped") {
		t.Error("the log does not say that part of it was dropped")
	}
	b.fails = 0
	l.close()
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
