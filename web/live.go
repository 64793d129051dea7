package web

import (
	"bytes"
	"context"
	"net/http"
	"sync"
)

// A liveLog is the growing log of a running execution, read by any number
// of followers from the start.
type liveLog struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
	// finished is closed when the execution has ended and its signed logs
	// are stored.
	finished chan struct{}
}

func newLiveLog() *liveLog {
	return &liveLog{changed: make(chan struct{}), finished: make(chan struct{})}
}

// Write appends to the log and wakes the followers.
func (l *liveLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *liveLog) finish() { close(l.finished) }

// stream writes the log to w from its start, flushing as it grows, until
// the execution ends or ctx does.
func (l *liveLog) stream(ctx context.Context, w http.ResponseWriter) error {
	flusher, _ := w.(http.Flusher)
	sent := 0
	for {
		l.mu.Lock()
		pending := bytes.Clone(l.buf.Bytes()[sent:])
		changed := l.changed
		l.mu.Unlock()
		if len(pending) > 0 {
			if _, err := w.Write(pending); err != nil {
				return nil
			}
			sent += len(pending)
			if flusher != nil {
				flusher.Flush()
			}
		}
		select {
		case <-changed:
		case <-l.finished:
			l.mu.Lock()
			rest := bytes.Clone(l.buf.Bytes()[sent:])
			l.mu.Unlock()
			w.Write(rest)
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
