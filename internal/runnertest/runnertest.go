// Package runnertest starts seb's runner for tests: the real engine, the
// real Terraform binary in the sandbox (see tftest.Sandbox), leasing from
// a broker in the same process.
package runnertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/internal/tftest"
	"github.com/seb-broker/seb/runner"
)

// Start runs a runner named name against b until the test ends or stop
// is called.
func Start(t testing.TB, b runner.Broker, name string) (stop func()) {
	t.Helper()
	opts := tftest.EngineOptions(t)
	opts.SensitiveKey = []byte("a runner's throwaway summary key")
	engine, err := drift.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return StartWith(t, runner.Options{Name: name, Broker: b, Engine: engine})
}

// StartWith runs a runner with opts until the test ends or stop is
// called.
func StartWith(t testing.TB, opts runner.Options) (stop func()) {
	t.Helper()
	if opts.StateEvery == 0 {
		opts.StateEvery = 100 * time.Millisecond
	}
	r, err := runner.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.Run(ctx)
	}()
	stop = func() { cancel(); wg.Wait() }
	t.Cleanup(stop)
	return stop
}
