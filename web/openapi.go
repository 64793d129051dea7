package web

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/labstack/echo/v4"
)

var pathParam = regexp.MustCompile(`:([a-z_]+)`)

// OpenAPI returns the OpenAPI 3.1 document of the API, built from the
// same route table the server registers and the bodies schema.go
// documents for each route, so the three cannot drift apart.
func OpenAPI() (map[string]any, error) {
	var s *Server
	paths := map[string]map[string]any{}
	add := func(r route, public bool) error {
		b, in, out, err := bodyOf(r.method, r.path)
		if err != nil {
			return err
		}
		op := map[string]any{"summary": r.summary, "responses": responses(b, out)}
		if public {
			op["description"] = "No token needed."
			op["security"] = []map[string][]string{}
		} else {
			roles := make([]string, len(r.roles))
			for i, role := range r.roles {
				roles[i] = string(role)
			}
			op["description"] = "Roles: " + strings.Join(roles, ", ") + "."
			op["security"] = []map[string][]string{{"bearer": {}}}
		}
		if in != nil {
			op["requestBody"] = map[string]any{"content": map[string]any{echo.MIMEApplicationJSON: map[string]any{"schema": in}}}
		}
		var params []map[string]any
		for _, m := range pathParam.FindAllStringSubmatch(r.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]string{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		path := "/api/v1" + pathParam.ReplaceAllString(r.path, "{$1}")
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(r.method)] = op
		return nil
	}
	for _, r := range s.allRoutes() {
		if !openAPIMethod(r.method) {
			continue // LOCK and UNLOCK of the state backend protocol
		}
		if err := add(r, false); err != nil {
			return nil, err
		}
	}
	for _, r := range s.publicRoutes() {
		if err := add(r, true); err != nil {
			return nil, err
		}
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]string{"title": "seb, the Sovereign Execution Broker for Terraform", "version": "1"},
		"paths":   paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]string{"type": "http", "scheme": "bearer", "description": "An API token from `seb tokens create`"}},
			"schemas":         map[string]any{"Error": errorSchema()},
		},
	}, nil
}

// responses describes a route's answers: each success status with its
// body, and any error as the Error body.
func responses(b body, out *jsonschema.Schema) map[string]any {
	errorBody := map[string]any{"description": "An error", "content": map[string]any{
		echo.MIMEApplicationJSON: map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}}
	rs := map[string]any{"default": errorBody}
	if b.refused {
		rs["403"] = errorBody
	}
	for _, status := range b.statuses() {
		if status == http.StatusNoContent || out == nil {
			rs[strconv.Itoa(status)] = map[string]any{"description": http.StatusText(status)}
			continue
		}
		media, description := b.media, http.StatusText(status)
		if media == "" {
			media = echo.MIMEApplicationJSON
		}
		content := map[string]any{"schema": out}
		if b.lines {
			description += ": JSON Lines, each line one value of this schema"
			content["x-seb-json-lines"] = true
		}
		rs[strconv.Itoa(status)] = map[string]any{"description": description, "content": map[string]any{media: content}}
	}
	return rs
}

// errorSchema is the schema of every error's body.
func errorSchema() *jsonschema.Schema {
	str := func() *jsonschema.Schema { return &jsonschema.Schema{Type: "string"} }
	return &jsonschema.Schema{Type: "object", Required: []string{"error"}, Properties: map[string]*jsonschema.Schema{
		"error": {Type: "object", Required: []string{"code", "message"}, Properties: map[string]*jsonschema.Schema{"code": str(), "message": str()}},
	}}
}

func (s *Server) openAPI(c echo.Context) error {
	return c.JSONBlob(http.StatusOK, s.openAPIDoc)
}

// openAPIMethod reports whether OpenAPI 3 can describe an operation of
// this method.
func openAPIMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodOptions, http.MethodHead, http.MethodPatch, http.MethodTrace:
		return true
	}
	return false
}

// RegisteredRoutes lists the routes the server answers that OpenAPI can
// describe, as "METHOD /path"
// with OpenAPI-style {parameters}.
func (s *Server) RegisteredRoutes() []string {
	var out []string
	for _, r := range s.echo.Routes() {
		if !openAPIMethod(r.Method) { // echo's own not-found routes, LOCK and UNLOCK
			continue
		}
		out = append(out, r.Method+" "+pathParam.ReplaceAllString(r.Path, "{$1}"))
	}
	return out
}
