package storetest

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/seb-broker/seb/broker"
)

func job(id string, kind broker.JobKind, workspace string, minute, attempts int) *broker.Job {
	return &broker.Job{ID: id, Kind: kind, Workspace: workspace, Subject: "subject-" + id, ConfigDigest: "sha256:cfg",
		Vars: map[string]string{"replicas": "3"}, State: broker.JobQueued, MaxAttempts: attempts, CreatedAt: at(minute)}
}

// testJobLeases: the oldest runnable job is leased with a fencing token
// greater than any before; its lease guards every write; an expired
// lease of a retryable job is leased again, with a new token, and the
// old token is refused from then on.
func testJobLeases(t *testing.T, s broker.Store) {
	ctx := context.Background()
	must(t, "enqueue", s.EnqueueJob(ctx, job("j2", broker.JobVerify, "w", 2, 2)))
	must(t, "enqueue", s.EnqueueJob(ctx, job("j1", broker.JobVerify, "w", 1, 2)))
	wantCode(t, "enqueue twice", s.EnqueueJob(ctx, job("j1", broker.JobVerify, "w", 1, 2)), broker.ECONFLICT, "")

	first, err := s.LeaseJob(ctx, "r1", at(10), time.Minute)
	must(t, "lease", err)
	if first.ID != "j1" || first.State != broker.JobLeased || first.Runner != "r1" || first.Attempts != 1 || first.Token <= 0 {
		t.Fatalf("first lease %+v", first)
	}
	checkTime(t, "lease expiry", first.LeaseExpires, at(11))
	if first.Vars["replicas"] != "3" || first.ConfigDigest != "sha256:cfg" || first.Subject != "subject-j1" {
		t.Errorf("leased job lost its inputs: %+v", first)
	}
	second, err := s.LeaseJob(ctx, "r2", at(10), time.Minute)
	must(t, "lease", err)
	if second.ID != "j2" || second.Token <= first.Token {
		t.Fatalf("second lease %+v after token %d", second, first.Token)
	}
	_, err = s.LeaseJob(ctx, "r3", at(10), time.Minute)
	wantCode(t, "lease with nothing queued", err, broker.ENOTFOUND, "")

	// A heartbeat within the lease extends it.
	first.LeaseExpires = at(12)
	must(t, "renew", s.UpdateJob(ctx, first, at(10)))
	// After the lease ended, the runner's writes are refused and another
	// runner takes the job over with a greater token.
	first.LeaseExpires = at(20)
	wantCode(t, "renew an expired lease", s.UpdateJob(ctx, first, at(13)), broker.ECONFLICT, "lease")
	wantCode(t, "log under an expired lease", s.AppendJobLog(ctx, "j1", first.Token, "plan", []byte("x"), at(13)), broker.ECONFLICT, "")
	again, err := s.LeaseJob(ctx, "r3", at(13), time.Minute)
	must(t, "lease the expired job", err)
	if again.ID != "j1" || again.Attempts != 2 || again.Token <= second.Token || again.Runner != "r3" {
		t.Fatalf("lease after expiry %+v", again)
	}
	wantCode(t, "the old token", s.UpdateJob(ctx, first, at(13)), broker.ECONFLICT, "")
	stale, err := s.StaleJobs(ctx, at(30))
	must(t, "stale jobs", err)
	if got := ids(stale, func(j *broker.Job) string { return j.ID }); len(got) != 2 {
		t.Errorf("stale at minute 30: %v", got)
	}
	// j2 has an attempt left and is leased again; j1 has none and is not.
	retried, err := s.LeaseJob(ctx, "r4", at(30), time.Minute)
	must(t, "lease j2 again", err)
	if retried.ID != "j2" || retried.Attempts != 2 {
		t.Errorf("leased %+v, want j2's second attempt", retried)
	}
	_, err = s.LeaseJob(ctx, "r4", at(30), time.Minute)
	wantCode(t, "lease a job out of attempts", err, broker.ENOTFOUND, "")

	again.State, again.Result = broker.JobDone, []byte(`{"plan":true}`)
	must(t, "finish", s.UpdateJob(ctx, again, at(13)))
	got, err := s.Job(ctx, "j1")
	must(t, "job", err)
	if got.State != broker.JobDone || string(got.Result) != `{"plan":true}` {
		t.Errorf("finished job %+v", got)
	}
	wantCode(t, "end a finished job", s.EndJob(ctx, "j1", broker.JobCancelled, "late", at(14)), broker.ECONFLICT, "already ended")
	must(t, "cancel", s.EndJob(ctx, "j2", broker.JobCancelled, "by admin", at(14)))
	wantCode(t, "a cancelled job's runner", s.UpdateJob(ctx, second, at(10)), broker.ECONFLICT, "")
	_, err = s.Job(ctx, "nope")
	wantCode(t, "missing job", err, broker.ENOTFOUND, "")
}

// testExecuteJobsSerialized: an execution is never leased while another
// execution of its workspace holds a lease, even an expired one, and is
// never leased twice.
func testExecuteJobsSerialized(t *testing.T, s broker.Store) {
	ctx := context.Background()
	must(t, "enqueue", s.EnqueueJob(ctx, job("e1", broker.JobExecute, "w", 1, 1)))
	must(t, "enqueue", s.EnqueueJob(ctx, job("e2", broker.JobExecute, "w", 2, 1)))
	must(t, "enqueue", s.EnqueueJob(ctx, job("e3", broker.JobExecute, "other", 3, 1)))
	a, err := s.LeaseJob(ctx, "r1", at(10), time.Minute)
	must(t, "lease", err)
	b, err := s.LeaseJob(ctx, "r2", at(10), time.Minute)
	must(t, "lease", err)
	if a.ID != "e1" || b.ID != "e3" {
		t.Fatalf("leased %s and %s, want e1 and e3 (e2 waits for e1's workspace)", a.ID, b.ID)
	}
	_, err = s.LeaseJob(ctx, "r3", at(30), time.Minute)
	wantCode(t, "lease while the workspace's execution is stale", err, broker.ENOTFOUND, "")
	must(t, "end", s.EndJob(ctx, "e1", broker.JobFailed, "interrupted", at(30)))
	c, err := s.LeaseJob(ctx, "r3", at(30), time.Minute)
	must(t, "lease after the first ended", err)
	if c.ID != "e2" {
		t.Errorf("leased %s, want e2", c.ID)
	}
}

// testLeaseConcurrently: many runners leasing at once get each job
// exactly once.
func testLeaseConcurrently(t *testing.T, s broker.Store) {
	ctx := context.Background()
	const jobs = 30
	for i := range jobs {
		must(t, "enqueue", s.EnqueueJob(ctx, job("c"+string(rune('A'+i)), broker.JobVerify, "w", i, 1)))
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for r := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j, err := s.LeaseJob(ctx, "r"+string(rune('0'+r)), at(100), time.Hour)
				if broker.ErrorCode(err) == broker.ENOTFOUND {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[j.ID]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != jobs {
		t.Errorf("%d jobs leased, want %d", len(seen), jobs)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("job %s leased %d times", id, n)
		}
	}
}

// testJobLogs: chunks come back in order, per phase.
func testJobLogs(t *testing.T, s broker.Store) {
	ctx := context.Background()
	must(t, "enqueue", s.EnqueueJob(ctx, job("l", broker.JobExecute, "w", 1, 1)))
	j, err := s.LeaseJob(ctx, "r", at(1), time.Hour)
	must(t, "lease", err)
	for _, c := range []struct{ phase, data string }{{"plan", "a\n"}, {"plan", "b\n"}, {"apply", "c\n"}, {"plan", "d\n"}} {
		must(t, "append", s.AppendJobLog(ctx, "l", j.Token, c.phase, []byte(c.data), at(2)))
	}
	wantCode(t, "append with a wrong token", s.AppendJobLog(ctx, "l", j.Token+1, "plan", []byte("x"), at(2)), broker.ECONFLICT, "")
	plan, err := s.JobLog(ctx, "l", "plan")
	must(t, "plan log", err)
	apply, err := s.JobLog(ctx, "l", "apply")
	must(t, "apply log", err)
	if string(plan) != "a\nb\nd\n" || string(apply) != "c\n" {
		t.Errorf("plan log %q, apply log %q", plan, apply)
	}
}

// testWorkspaceHolds: a hold keeps its first reason until released.
func testWorkspaceHolds(t *testing.T, s broker.Store) {
	ctx := context.Background()
	_, err := s.WorkspaceHold(ctx, "w")
	wantCode(t, "no hold", err, broker.ENOTFOUND, "")
	must(t, "hold", s.HoldWorkspace(ctx, broker.Hold{Workspace: "w", Execution: "e1", Reason: "first", Since: at(1)}))
	must(t, "hold again", s.HoldWorkspace(ctx, broker.Hold{Workspace: "w", Execution: "e2", Reason: "second", Since: at(2)}))
	h, err := s.WorkspaceHold(ctx, "w")
	must(t, "hold", err)
	if h.Execution != "e1" || h.Reason != "first" {
		t.Errorf("hold %+v", h)
	}
	checkTime(t, "hold since", h.Since, at(1))
	must(t, "release", s.ReleaseWorkspace(ctx, "w"))
	wantCode(t, "release twice", s.ReleaseWorkspace(ctx, "w"), broker.ENOTFOUND, "")
}

// testDeleteAPIToken: a deleted token no longer authenticates.
func testDeleteAPIToken(t *testing.T, s broker.Store) {
	ctx := context.Background()
	_, record, err := broker.NewAPIToken("runner-1", broker.RoleRunner, at(1))
	must(t, "token", err)
	must(t, "create", s.CreateAPIToken(ctx, record))
	_, other, err := broker.NewAPIToken("alice", broker.RoleReviewer, at(2))
	must(t, "token", err)
	other.Workspaces = []string{"prod", "staging"}
	must(t, "create", s.CreateAPIToken(ctx, other))
	list, err := s.ListAPITokens(ctx)
	must(t, "list", err)
	if len(list) != 2 || list[0].Name != "alice" || list[0].Role != broker.RoleReviewer || list[1].Name != "runner-1" || list[1].Hash != record.Hash {
		t.Fatalf("ListAPITokens = %+v", list)
	}
	if !slices.Equal(list[0].Workspaces, []string{"prod", "staging"}) || list[1].Workspaces != nil {
		t.Errorf("workspaces: %v, %v", list[0].Workspaces, list[1].Workspaces)
	}
	if got, err := s.APITokenByHash(ctx, other.Hash); err != nil || !slices.Equal(got.Workspaces, other.Workspaces) {
		t.Errorf("APITokenByHash: %+v, %v", got, err)
	}
	checkTime(t, "created", list[1].CreatedAt, at(1))
	must(t, "delete", s.DeleteAPIToken(ctx, "runner-1"))
	if list, err := s.ListAPITokens(ctx); err != nil || len(list) != 1 {
		t.Errorf("after delete: %+v, %v", list, err)
	}
	_, err = s.APITokenByHash(ctx, record.Hash)
	wantCode(t, "a deleted token", err, broker.ENOTFOUND, "")
	wantCode(t, "delete twice", s.DeleteAPIToken(ctx, "runner-1"), broker.ENOTFOUND, "")
}

// testRenewJob: renewing extends the lease and changes nothing else, so a
// heartbeat never undoes a report written beside it; a lost lease is not
// renewed.
func testRenewJob(t *testing.T, s broker.Store) {
	ctx := context.Background()
	must(t, "enqueue", s.EnqueueJob(ctx, job("r", broker.JobExecute, "w", 1, 1)))
	j, err := s.LeaseJob(ctx, "r1", at(1), time.Minute)
	must(t, "lease", err)
	stale := *j
	j.Phase = "apply"
	must(t, "to apply", s.UpdateJob(ctx, j, at(1)))
	_, err = s.RenewJob(ctx, "r", stale.Token, "r", at(5), at(1))
	wantCode(t, "renew by another runner whose name begins the same", err, broker.ECONFLICT, "")
	_, err = s.RenewJob(ctx, "r", stale.Token, "r1/", at(5), at(1))
	wantCode(t, "renew by another runner", err, broker.ECONFLICT, "")
	renewed, err := s.RenewJob(ctx, "r", stale.Token, "r1", at(5), at(1))
	must(t, "renew", err)
	if renewed.Phase != "apply" {
		t.Errorf("renewing set the phase back to %q", renewed.Phase)
	}
	checkTime(t, "renewed lease", renewed.LeaseExpires, at(5))
	if _, err := s.RenewJob(ctx, "r", stale.Token, "", at(5), at(1)); err != nil {
		t.Errorf("renew for any runner: %v", err)
	}
	_, err = s.RenewJob(ctx, "r", stale.Token+1, "", at(6), at(2))
	wantCode(t, "renew with another token", err, broker.ECONFLICT, "")
	_, err = s.RenewJob(ctx, "r", stale.Token, "", at(9), at(6))
	wantCode(t, "renew an expired lease", err, broker.ECONFLICT, "")
}

// testHeldWorkspaceNotLeased: no execution of a held workspace is leased
// until it is released; other jobs of it are.
func testHeldWorkspaceNotLeased(t *testing.T, s broker.Store) {
	ctx := context.Background()
	must(t, "hold", s.HoldWorkspace(ctx, broker.Hold{Workspace: "w", Execution: "e0", Reason: "interrupted", Since: at(0)}))
	must(t, "enqueue", s.EnqueueJob(ctx, job("e1", broker.JobExecute, "w", 1, 1)))
	must(t, "enqueue", s.EnqueueJob(ctx, job("v1", broker.JobVerify, "w", 2, 1)))
	j, err := s.LeaseJob(ctx, "r", at(3), time.Minute)
	must(t, "lease", err)
	if j.ID != "v1" {
		t.Errorf("leased %s of a held workspace, want only the verification", j.ID)
	}
	_, err = s.LeaseJob(ctx, "r", at(3), time.Minute)
	wantCode(t, "lease an execution of a held workspace", err, broker.ENOTFOUND, "")
	must(t, "release", s.ReleaseWorkspace(ctx, "w"))
	if j, err := s.LeaseJob(ctx, "r", at(4), time.Minute); err != nil || j.ID != "e1" {
		t.Errorf("after release: %+v, %v", j, err)
	}
}

// testJobNotBefore: a job queued again to be tried later is not leased
// before its time.
func testJobNotBefore(t *testing.T, s broker.Store) {
	ctx := context.Background()
	must(t, "enqueue", s.EnqueueJob(ctx, job("n", broker.JobVerify, "w", 1, 3)))
	j, err := s.LeaseJob(ctx, "r", at(2), time.Minute)
	must(t, "lease", err)
	j.State, j.Error, j.NotBefore = broker.JobQueued, "runner failed", at(20)
	must(t, "queue again", s.UpdateJob(ctx, j, at(2)))
	_, err = s.LeaseJob(ctx, "r", at(10), time.Minute)
	wantCode(t, "lease before its time", err, broker.ENOTFOUND, "")
	again, err := s.LeaseJob(ctx, "r", at(21), time.Minute)
	must(t, "lease after its time", err)
	if again.ID != "n" || again.Attempts != 2 || again.Error != "runner failed" {
		t.Errorf("leased %+v", again)
	}
	checkTime(t, "not before", again.NotBefore, at(20))
}

// testJobOwnersShareSlots: a verify or plan job waits while another job
// of its owner holds a live lease — one agent's slow plans hold at most
// one runner slot — but never an execution, nor a job behind an expired
// lease.
func testJobOwnersShareSlots(t *testing.T, s broker.Store) {
	ctx := context.Background()
	owned := func(id string, kind broker.JobKind, owner string, minute int) *broker.Job {
		j := job(id, kind, "w-"+id, minute, 3)
		j.Owner = owner
		return j
	}
	must(t, "enqueue", s.EnqueueJob(ctx, owned("a1", broker.JobVerify, "agent-a", 1)))
	must(t, "enqueue", s.EnqueueJob(ctx, owned("a2", broker.JobPlan, "agent-a", 2)))
	must(t, "enqueue", s.EnqueueJob(ctx, owned("b1", broker.JobVerify, "agent-b", 3)))
	must(t, "enqueue", s.EnqueueJob(ctx, owned("e1", broker.JobExecute, "", 4)))
	var got []string
	for range 3 {
		j, err := s.LeaseJob(ctx, "r", at(10), time.Minute)
		must(t, "lease", err)
		got = append(got, j.ID)
		if j.Owner == "" && j.Kind != broker.JobExecute {
			t.Errorf("job %s lost its owner", j.ID)
		}
	}
	if want := []string{"a1", "b1", "e1"}; !slices.Equal(got, want) {
		t.Fatalf("leased %v, want %v: agent-a's second job must wait", got, want)
	}
	_, err := s.LeaseJob(ctx, "r", at(10), time.Minute)
	wantCode(t, "lease while the owner holds one", err, broker.ENOTFOUND, "")
	// Once agent-a's lease expires, its next job may run.
	j, err := s.LeaseJob(ctx, "r", at(12), time.Minute)
	must(t, "lease after the owner's lease expired", err)
	if j.ID != "a1" && j.ID != "a2" {
		t.Errorf("leased %s after agent-a's lease expired", j.ID)
	}
}
