package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/seb-broker/seb/broker"
)

// Client is a broker over HTTP, for a runner in another process: every
// call authenticates with the runner's token.
type Client struct {
	base  string
	token string
	http  *http.Client
}

var _ Broker = (*Client)(nil)

// NewClient returns a client of the broker at server (e.g.
// http://127.0.0.1:8080) that authenticates with token.
func NewClient(server, token string) (*Client, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("runner: server %q is not an http(s) URL", server)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, fmt.Errorf("runner: the runner token is empty")
	}
	return &Client{base: strings.TrimSuffix(server, "/") + "/api/v1/runner", token: token, http: &http.Client{Timeout: 5 * time.Minute}}, nil
}

// call posts body as JSON to path and decodes a JSON answer into out
// (when not nil). Errors the broker sends come back as *broker.Error with
// their code, so the runner tells a lost lease (ECONFLICT) from the rest.
func (c *Client) call(ctx context.Context, path string, body, out any) (int, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(raw))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
			return resp.StatusCode, broker.Errorf(e.Error.Code, "%s", e.Error.Message)
		}
		return resp.StatusCode, fmt.Errorf("broker: %s", resp.Status)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("broker answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// LeaseJob implements Broker.
func (c *Client) LeaseJob(ctx context.Context, runner string, wait time.Duration) (*broker.Lease, error) {
	var lease broker.Lease
	status, err := c.call(ctx, "/lease", map[string]any{"runner": runner, "wait_seconds": int(wait.Seconds())}, &lease)
	if err != nil {
		return nil, err
	}
	if status == http.StatusNoContent {
		return nil, broker.Errorf(broker.ENOTFOUND, "no job to run")
	}
	return &lease, nil
}

func (c *Client) report(ctx context.Context, id, what string, body map[string]any, out any) error {
	_, err := c.call(ctx, "/jobs/"+url.PathEscape(id)+"/"+what, body, out)
	return err
}

// Heartbeat implements Broker.
func (c *Client) Heartbeat(ctx context.Context, id string, token int64) error {
	return c.report(ctx, id, "heartbeat", map[string]any{"token": token}, nil)
}

// AppendLog implements Broker.
func (c *Client) AppendLog(ctx context.Context, id string, token int64, phase string, data []byte) error {
	return c.report(ctx, id, "log", map[string]any{"token": token, "phase": phase, "data": data}, nil)
}

// ReportPlan implements Broker.
func (c *Client) ReportPlan(ctx context.Context, id string, token int64, r broker.PlanReport) (*broker.PlanVerdict, error) {
	var v broker.PlanVerdict
	if err := c.report(ctx, id, "plan", map[string]any{"token": token, "plan": r}, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// ReportState implements Broker.
func (c *Client) ReportState(ctx context.Context, id string, token int64, state []byte) error {
	return c.report(ctx, id, "state", map[string]any{"token": token, "data": state}, nil)
}

// ReportApply implements Broker.
func (c *Client) ReportApply(ctx context.Context, id string, token int64, r broker.ApplyReport) error {
	return c.report(ctx, id, "apply", map[string]any{"token": token, "apply": r}, nil)
}

// ReportFailure implements Broker.
func (c *Client) ReportFailure(ctx context.Context, id string, token int64, reason string) error {
	return c.report(ctx, id, "fail", map[string]any{"token": token, "reason": reason}, nil)
}
