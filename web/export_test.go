package web

import (
	"strings"

	"github.com/google/jsonschema-go/jsonschema"
)

// What the contract tests read of the API's documentation; the server
// itself only serves it.

// A RouteDoc is what the API documents of one route.
type RouteDoc struct {
	Request, Answer *jsonschema.Schema // nil: none
	Media           string             // the answer's media type
	Lines           bool               // the answer is JSON Lines of Answer
	Statuses        []int              // its success statuses
}

// Documented returns what the API documents of each route, by
// "METHOD path" ("GET /proposals/:id").
func Documented() (map[string]RouteDoc, error) {
	out := map[string]RouteDoc{}
	for r := range bodies {
		method, path, _ := strings.Cut(r, " ")
		b, in, answer, err := bodyOf(method, path)
		if err != nil {
			return nil, err
		}
		media := b.media
		if media == "" {
			media = "application/json"
		}
		out[r] = RouteDoc{Request: in, Answer: answer, Media: media, Lines: b.lines, Statuses: b.statuses()}
	}
	return out, nil
}

// ErrorSchema is the schema of every error's body.
func ErrorSchema() *jsonschema.Schema { return errorSchema() }
