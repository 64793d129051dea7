package drift_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/seb-broker/seb/drift"
	"github.com/seb-broker/seb/fixtures/sandboxcloud"
	"github.com/seb-broker/seb/internal/tftest"
)

// BenchmarkExecute measures one full seb run of a one-resource change —
// materialize, init, plan, show, compare, apply — against the sandbox, and
// reports where the time goes. Window is the time between the end of the
// refresh and the start of the apply.
func BenchmarkExecute(b *testing.B) {
	benchExecute(b, newEnv(b, sandboxcloud.Options{}))
}

// BenchmarkSandbox measures the same execution as BenchmarkExecute with
// every Terraform process in the bubblewrap sandbox and without one: the
// sandbox's cost is the ratio of the two.
func BenchmarkSandbox(b *testing.B) {
	if tftest.Sandbox(b) == nil {
		b.Skip("no bubblewrap here")
	}
	b.Run("sandboxed", func(b *testing.B) { benchExecute(b, newEnv(b, sandboxcloud.Options{})) })
	b.Run("unsandboxed", func(b *testing.B) {
		benchExecute(b, newEnvWith(b, sandboxcloud.Options{}, func(o *drift.Options) { o.Sandbox, o.InsecureNoSandbox = nil, true }))
	})
}

func benchExecute(b *testing.B, e *env) {
	ctx := context.Background()
	var window, plan, show, compare, apply time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		vars := replicas(fmt.Sprint(2 + i%2))
		state, err := e.store.Current(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		cw, err := e.runner.NewWorkdirFromDirectory(filepath.Join(configs, "scale"))
		if err != nil {
			b.Fatal(err)
		}
		p, err := cw.Plan(ctx, drift.PlanRequest{Vars: vars, State: state, Credentials: e.sb.Credentials(e.issuer, "bench")})
		cw.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		w, err := e.runner.NewWorkdirFromDirectory(filepath.Join(configs, "scale"))
		if err != nil {
			b.Fatal(err)
		}
		res, err := w.Execute(ctx, drift.ExecuteRequest{Workspace: "bench", Vars: vars, Certified: p.Plan.Summary,
			Mode: drift.ModeDefault, Credentials: e.sb.Credentials(e.issuer, "bench"), State: e.store})
		w.Close()
		if err != nil {
			b.Fatal(err)
		}
		window += res.Timings.Window
		plan += res.Timings.Plan
		show += res.Timings.Show
		compare += res.Timings.Compare
		apply += res.Timings.Apply
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(window.Milliseconds())/n, "window-ms")
	b.ReportMetric(float64(plan.Milliseconds())/n, "init+plan-ms")
	b.ReportMetric(float64(show.Microseconds())/n/1000, "show-ms")
	b.ReportMetric(float64(compare.Microseconds())/n/1000, "compare-ms")
	b.ReportMetric(float64(apply.Milliseconds())/n, "apply-ms")
}

// BenchmarkBareTerraform measures what a user would run by hand for the
// same change in a fresh copy of the configuration: init, plan -out,
// apply of the plan.
func BenchmarkBareTerraform(b *testing.B) {
	e := newEnv(b, sandboxcloud.Options{})
	ctx := context.Background()
	stateDir := b.TempDir()
	bin := tftest.Binary(b)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1",
		"TF_CLI_CONFIG_FILE=" + e.cliConfig}
	creds, err := e.sb.Credentials(e.issuer, "bench").Env(ctx, drift.PhaseApply, stateDir)
	if err != nil {
		b.Fatal(err)
	}
	for k, v := range creds {
		env = append(env, k+"="+v)
	}
	spent := map[string]time.Duration{}
	run := func(dir string, args ...string) {
		start := time.Now()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("terraform %v: %v\n%s", args, err, out)
		}
		spent[args[0]] += time.Since(start)
	}
	state := filepath.Join(stateDir, "terraform.tfstate")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		if err := os.CopyFS(dir, os.DirFS(filepath.Join(configs, "scale"))); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		run(dir, "init", "-input=false", "-no-color")
		run(dir, "plan", "-input=false", "-no-color", "-state="+state, "-out=p.tfplan", fmt.Sprintf("-var=replicas=%d", 2+i%2))
		run(dir, "apply", "-input=false", "-no-color", "-state="+state, "p.tfplan")
	}
	b.StopTimer()
	for name, d := range spent {
		b.ReportMetric(float64(d.Milliseconds())/float64(b.N), name+"-ms")
	}
}
