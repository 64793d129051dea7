package web

import (
	"encoding/json"
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
}

// bodies are the request and 2XX response types of the routes that have
// them, by "METHOD path".
var bodies = map[string]struct{ in, out reflect.Type }{
	"GET /workspaces":                         {nil, reflect.TypeFor[workspaceList]()},
	"GET /workspaces/:workspace":              {nil, reflect.TypeFor[workspaceJSON]()},
	"POST /workspaces/:workspace/plan":        {reflect.TypeFor[planRequest](), reflect.TypeFor[planJSON]()},
	"POST /workspaces/:workspace/proposals":   {reflect.TypeFor[proposalRequest](), reflect.TypeFor[proposalJSON]()},
	"GET /proposals":                          {nil, reflect.TypeFor[proposalPage]()},
	"GET /proposals/:id":                      {nil, reflect.TypeFor[proposalJSON]()},
	"POST /proposals/:id/approve":             {reflect.TypeFor[reviewRequest](), reflect.TypeFor[proposalJSON]()},
	"POST /proposals/:id/reject":              {reflect.TypeFor[reviewRequest](), reflect.TypeFor[proposalJSON]()},
	"POST /proposals/:id/again":               {nil, reflect.TypeFor[proposalJSON]()},
	"GET /certificates/:id":                   {nil, reflect.TypeFor[certificateJSON]()},
	"POST /executions":                        {reflect.TypeFor[executionRequest](), reflect.TypeFor[executionJSON]()},
	"GET /executions/:id":                     {nil, reflect.TypeFor[executionJSON]()},
	"GET /tokens":                             {nil, reflect.TypeFor[tokenList]()},
	"POST /tokens":                            {reflect.TypeFor[tokenRequest](), reflect.TypeFor[tokenJSON]()},
	"POST /workspaces/:workspace/reconcile":   {reflect.TypeFor[reconcileRequest](), nil},
	"POST /workspaces/:workspace/revoke-all":  {nil, reflect.TypeFor[revokedAllJSON]()},
	"POST /workspaces/:workspace/credentials": {nil, reflect.TypeFor[planCredentialJSON]()},
	"POST /certificates/:id/revoke":           {nil, reflect.TypeFor[revokedJSON]()},
	"GET /audit":                              {nil, reflect.TypeFor[auditPageJSON]()},
	"GET /audit/verify":                       {nil, reflect.TypeFor[auditVerifyJSON]()},
	"POST /runner/lease":                      {reflect.TypeFor[leaseRequest](), reflect.TypeFor[broker.Lease]()},
	"POST /runner/jobs/:id/heartbeat":         {reflect.TypeFor[jobReport](), nil},
	"POST /runner/jobs/:id/log":               {reflect.TypeFor[jobReport](), nil},
	"POST /runner/jobs/:id/plan":              {reflect.TypeFor[jobReport](), reflect.TypeFor[broker.PlanVerdict]()},
	"POST /runner/jobs/:id/state":             {reflect.TypeFor[jobReport](), nil},
	"POST /runner/jobs/:id/apply":             {reflect.TypeFor[jobReport](), nil},
	"POST /runner/jobs/:id/fail":              {reflect.TypeFor[jobReport](), nil},
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

// bodySchemas returns the schemas of a route's request and 2XX response
// (nil for none).
func bodySchemas(method, path string) (in, out *jsonschema.Schema, err error) {
	b, ok := bodies[method+" "+path]
	if !ok {
		return nil, nil, nil
	}
	if b.in != nil {
		if in, err = schemaFor(b.in); err != nil {
			return nil, nil, err
		}
	}
	if b.out != nil {
		if out, err = schemaFor(b.out); err != nil {
			return nil, nil, err
		}
	}
	return in, out, nil
}
