package web

import "github.com/google/jsonschema-go/jsonschema"

// What the contract tests read of the API's schemas; the server itself
// only serves them.

// BodySchema returns the JSON Schema of the 2XX answer of an API route
// ("GET", "/proposals/:id"), or nil when it has none documented.
func BodySchema(method, path string) (*jsonschema.Schema, error) {
	_, out, err := bodySchemas(method, path)
	return out, err
}

// DocumentedRoutes lists, as "METHOD path", the API routes whose bodies
// have a schema.
func DocumentedRoutes() []string {
	var out []string
	for r := range bodies {
		out = append(out, r)
	}
	return out
}

// RequestSchema returns the JSON Schema of an API route's request body,
// or nil when it has none documented.
func RequestSchema(method, path string) (*jsonschema.Schema, error) {
	in, _, err := bodySchemas(method, path)
	return in, err
}
