package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/seb-broker/seb/broker"
	"github.com/seb-broker/seb/planparse"
)

// The API's bodies, described by their Go types: the same types the
// handlers decode and encode, so the document cannot drift from them.

// proposalPage is a page of proposals.
type proposalPage struct {
	Items []proposalJSON `json:"items"`
	// Next, on a full page, is the cursor of the next: ?after=Next.
	Next string `json:"next,omitempty"`
}

type workspaceList struct {
	Items []workspaceJSON `json:"items"`
}

type tokenList struct {
	Items []tokenJSON `json:"items"`
}

type revokedJSON struct {
	Revoked string `json:"revoked"`
}

type revokedAllJSON struct {
	Workspace       string `json:"workspace"`
	RevocationEpoch int64  `json:"revocation_epoch"`
}

type auditPageJSON struct {
	Items []*broker.AuditEntry `json:"items"`
	// NextAfter is the seq to page from: ?after=NextAfter.
	NextAfter string `json:"next_after"`
}

type auditVerifyJSON struct {
	Verified bool   `json:"verified"`
	Entries  int64  `json:"entries"`
	Head     string `json:"head,omitempty"`
	KeyID    string `json:"key_id,omitempty"`
	BrokenAt int64  `json:"broken_at,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// planCredentialJSON is a plan-phase credential for an agent that plans
// itself, and how to hand it to Terraform.
type planCredentialJSON struct {
	Token        string            `json:"token"`
	ExpiresAt    time.Time         `json:"expires_at"`
	Phase        string            `json:"phase"`
	Audience     string            `json:"audience"`
	TokenFileEnv []string          `json:"token_file_env"`
	Env          map[string]string `json:"env"`
}

type tokenRequest struct {
	Name       string      `json:"name"`
	Role       broker.Role `json:"role"`
	Workspaces []string    `json:"workspaces,omitempty"`
	// Groups are the holder's groups, which a policy may require
	// approvals from.
	Groups []string `json:"groups,omitempty"`
}

// A body says what a route takes and what it answers on success.
type body struct {
	in  reflect.Type // the JSON request's Go type; nil when it takes none
	out reflect.Type // the JSON answer's Go type
	// answer is the answer's schema when no Go type of seb writes it: a
	// DSSE envelope, a PEM key, Terraform's state or log.
	answer func() *jsonschema.Schema
	media  string // the answer's media type; application/json when ""
	lines  bool   // JSON Lines: each line of the answer is one out (or answer)
	// ok are the success statuses, 200 when none; 204 answers nothing.
	// A route that only refuses has none: refused.
	ok      []int
	refused bool
}

// Media types of answers that are not plain JSON.
const (
	mediaJSONLines = "application/x-ndjson"
	mediaDSSE      = "application/vnd.dsse.envelope.v1+json"
	mediaPEM       = "application/x-pem-file"
)

// bodies documents every route of the API (allRoutes and publicRoutes),
// by "METHOD path"; OpenAPI refuses to describe a route missing here.
var bodies = map[string]body{
	"GET /workspaces":                         {out: reflect.TypeFor[workspaceList]()},
	"GET /workspaces/:workspace":              {out: reflect.TypeFor[workspaceJSON]()},
	"POST /workspaces/:workspace/plan":        {in: reflect.TypeFor[planRequest](), out: reflect.TypeFor[planJSON]()},
	"POST /workspaces/:workspace/proposals":   {in: reflect.TypeFor[proposalRequest](), out: reflect.TypeFor[proposalJSON](), ok: []int{http.StatusAccepted}},
	"POST /workspaces/:workspace/revoke-all":  {out: reflect.TypeFor[revokedAllJSON]()},
	"POST /workspaces/:workspace/reconcile":   {in: reflect.TypeFor[reconcileRequest](), ok: []int{http.StatusNoContent}},
	"POST /workspaces/:workspace/credentials": {out: reflect.TypeFor[planCredentialJSON]()},
	"GET /workspaces/:workspace/state":        {answer: terraformState, ok: []int{http.StatusOK, http.StatusNoContent}},
	"POST /workspaces/:workspace/state":       {refused: true},
	"DELETE /workspaces/:workspace/state":     {refused: true},
	"GET /tokens":                             {out: reflect.TypeFor[tokenList]()},
	"POST /tokens":                            {in: reflect.TypeFor[tokenRequest](), out: reflect.TypeFor[tokenJSON](), ok: []int{http.StatusCreated}},
	"DELETE /tokens/:name":                    {ok: []int{http.StatusNoContent}},
	"POST /jobs/:id/cancel":                   {ok: []int{http.StatusNoContent}},
	"GET /proposals":                          {out: reflect.TypeFor[proposalPage]()},
	"GET /proposals/:id":                      {out: reflect.TypeFor[proposalJSON]()},
	"POST /proposals/:id/approve":             {in: reflect.TypeFor[reviewRequest](), out: reflect.TypeFor[proposalJSON]()},
	"POST /proposals/:id/reject":              {in: reflect.TypeFor[reviewRequest](), out: reflect.TypeFor[proposalJSON]()},
	"POST /proposals/:id/again":               {out: reflect.TypeFor[proposalJSON](), ok: []int{http.StatusAccepted}},
	"GET /certificates/:id":                   {out: reflect.TypeFor[certificateJSON]()},
	"POST /certificates/:id/revoke":           {out: reflect.TypeFor[revokedJSON]()},
	"POST /executions":                        {in: reflect.TypeFor[executionRequest](), out: reflect.TypeFor[executionJSON](), ok: []int{http.StatusAccepted}},
	"GET /executions/:id":                     {out: reflect.TypeFor[executionJSON]()},
	"GET /executions/:id/logs":                {answer: terraformLogLine, media: mediaJSONLines, lines: true},
	"GET /artifacts/:id":                      {answer: dsseEnvelope, media: mediaDSSE},
	"GET /audit":                              {out: reflect.TypeFor[auditPageJSON]()},
	"GET /audit/export":                       {out: reflect.TypeFor[broker.AuditEntry](), media: mediaJSONLines, lines: true},
	"GET /audit/verify":                       {out: reflect.TypeFor[auditVerifyJSON]()},
	"POST /runner/lease":                      {in: reflect.TypeFor[leaseRequest](), out: reflect.TypeFor[broker.Lease](), ok: []int{http.StatusOK, http.StatusNoContent}},
	"POST /runner/jobs/:id/heartbeat":         {in: reflect.TypeFor[jobReport](), ok: []int{http.StatusNoContent}},
	"POST /runner/jobs/:id/log":               {in: reflect.TypeFor[jobReport](), ok: []int{http.StatusNoContent}},
	"POST /runner/jobs/:id/plan":              {in: reflect.TypeFor[jobReport](), out: reflect.TypeFor[broker.PlanVerdict]()},
	"POST /runner/jobs/:id/state":             {in: reflect.TypeFor[jobReport](), ok: []int{http.StatusNoContent}},
	"POST /runner/jobs/:id/apply":             {in: reflect.TypeFor[jobReport](), ok: []int{http.StatusNoContent}},
	"POST /runner/jobs/:id/fail":              {in: reflect.TypeFor[jobReport](), ok: []int{http.StatusNoContent}},
	// Public: what anyone checking seb's evidence needs.
	"GET /keys/signing":     {answer: pemKeys, media: mediaPEM},
	"GET /audit/checkpoint": {answer: dsseEnvelope, media: mediaDSSE},
	"GET /openapi.json":     {answer: openAPIDocument},
}

// statuses returns a body's success statuses.
func (b body) statuses() []int {
	if b.refused {
		return nil
	}
	if len(b.ok) == 0 {
		return []int{http.StatusOK}
	}
	return b.ok
}

// dsseEnvelope is the schema of a DSSE envelope: seb's certificates,
// checkpoints and artifacts.
func dsseEnvelope() *jsonschema.Schema {
	str := func() *jsonschema.Schema { return &jsonschema.Schema{Type: "string"} }
	return &jsonschema.Schema{
		Type: "object", Required: []string{"payloadType", "payload", "signatures"},
		Description: "A DSSE envelope (github.com/secure-systems-lab/dsse): the payload, base64, signed over PAE(payloadType, payload)",
		Properties: map[string]*jsonschema.Schema{
			"payloadType": {Type: "string", Pattern: "^application/vnd\\.seb\\."},
			"payload":     {Type: "string", ContentEncoding: "base64"},
			"signatures": {Type: "array", MinItems: jsonschema.Ptr(1), Items: &jsonschema.Schema{
				Type: "object", Required: []string{"keyid", "sig"},
				Properties: map[string]*jsonschema.Schema{"keyid": str(), "sig": {Type: "string", ContentEncoding: "base64"}},
			}},
		},
	}
}

// pemKeys is the schema of seb's public signing keys: PEM blocks, the
// current key first, then the retired ones.
func pemKeys() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "string", Pattern: "^-----BEGIN PUBLIC KEY-----\n",
		Description: "seb's Ed25519 public keys as PEM PUBLIC KEY blocks: the current key first, then retired ones"}
}

// terraformState is the schema of Terraform's state (format version 4),
// as Terraform's http backend reads it.
func terraformState() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type: "object", Required: []string{"version", "serial", "lineage"},
		Description: "Terraform state, as `terraform state pull` shows it",
		Properties: map[string]*jsonschema.Schema{
			"version":           {Type: "integer", Const: jsonschema.Ptr[any](4)},
			"terraform_version": {Type: "string"},
			"serial":            {Type: "integer", Minimum: jsonschema.Ptr(0.0)},
			"lineage":           {Type: "string"},
			"outputs":           {Type: "object"},
			"resources":         {Type: "array", Items: &jsonschema.Schema{Type: "object"}},
		},
	}
}

// terraformLogLine is the schema of one line of a log: a message of
// Terraform's machine-readable UI (`terraform plan -json`), or one of the
// runner's own in the same form.
func terraformLogLine() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type: "object", Required: []string{"@level", "@message"},
		Description: "One message of Terraform's machine-readable UI; see Terraform's documentation of `-json` output",
		Properties: map[string]*jsonschema.Schema{
			"@level":     {Type: "string"},
			"@message":   {Type: "string"},
			"@module":    {Type: "string"},
			"@timestamp": {Type: "string"},
			"type":       {Type: "string"},
		},
	}
}

// openAPIDocument is the schema of this API's own document.
func openAPIDocument() *jsonschema.Schema {
	return &jsonschema.Schema{Type: "object", Required: []string{"openapi", "info", "paths"},
		Description: "This document: OpenAPI 3.1",
		Properties:  map[string]*jsonschema.Schema{"openapi": {Type: "string", Pattern: "^3\\.1\\."}}}
}

// schemaFor infers the JSON Schema of t. A type that encodes itself
// (json.Marshaler) is described as any JSON value, since its fields do not
// say what it writes; a request's variables may be any JSON values; bytes
// are base64 text.
func schemaFor(t reflect.Type) (*jsonschema.Schema, error) {
	overrides := map[reflect.Type]*jsonschema.Schema{
		reflect.TypeFor[json.RawMessage](): {},
		reflect.TypeFor[[]byte]():          {Type: "string", ContentEncoding: "base64"},
		reflect.TypeFor[varsJSON]():        {Type: "object", AdditionalProperties: &jsonschema.Schema{}},
		reflect.TypeFor[time.Time]():       {Type: "string", Format: "date-time"},
		// A recursive type (a schema tree): an object, unchecked inside.
		reflect.TypeFor[planparse.SchemaNode](): {Type: "object"},
	}
	marshalers(t, overrides, map[reflect.Type]bool{})
	return jsonschema.ForType(t, &jsonschema.ForOptions{IgnoreInvalidTypes: true, TypeSchemas: overrides})
}

var marshalerType = reflect.TypeFor[json.Marshaler]()

// anyValue is a schema of any JSON value but null (a pointer adds null).
func anyValue() *jsonschema.Schema {
	return &jsonschema.Schema{Types: []string{"object", "array", "string", "number", "integer", "boolean"}}
}

// marshalers records, as any JSON value, every type reachable from t that
// encodes itself.
func marshalers(t reflect.Type, out map[reflect.Type]*jsonschema.Schema, seen map[reflect.Type]bool) {
	if seen[t] {
		return
	}
	seen[t] = true
	if _, ok := out[t]; ok {
		return
	}
	if t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType) {
		// Any JSON value; a pointer to it may also be null.
		out[t] = anyValue()
		if t.Kind() == reflect.Pointer {
			out[t.Elem()] = anyValue()
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		marshalers(t.Elem(), out, seen)
	case reflect.Map:
		marshalers(t.Elem(), out, seen)
	case reflect.Struct:
		for i := range t.NumField() {
			marshalers(t.Field(i).Type, out, seen)
		}
	}
}

// bodyOf returns what a route takes and answers, and the schemas of its
// request and success answer (nil for none). A route bodies does not
// document is an error.
func bodyOf(method, path string) (b body, in, out *jsonschema.Schema, err error) {
	b, ok := bodies[method+" "+path]
	if !ok {
		return b, nil, nil, fmt.Errorf("the API route %s %s is not documented in web/schema.go", method, path)
	}
	if b.in != nil {
		if in, err = schemaFor(b.in); err != nil {
			return b, nil, nil, err
		}
	}
	switch {
	case b.out != nil:
		if out, err = schemaFor(b.out); err != nil {
			return b, nil, nil, err
		}
	case b.answer != nil:
		out = b.answer()
	}
	return b, in, out, nil
}
