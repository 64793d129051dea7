package web

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"
)

var pathParam = regexp.MustCompile(`:([a-z_]+)`)

// OpenAPI returns the OpenAPI 3 document of the API, built from the same
// route table the server registers, so the two cannot drift apart.
func OpenAPI() map[string]any {
	var s *Server
	paths := map[string]map[string]any{}
	for _, r := range s.allRoutes() {
		if !openAPIMethod(r.method) {
			continue // LOCK and UNLOCK of the state backend protocol
		}
		path := pathParam.ReplaceAllString(r.path, "{$1}")
		roles := make([]string, len(r.roles))
		for i, role := range r.roles {
			roles[i] = string(role)
		}
		op := map[string]any{
			"summary":     r.summary,
			"description": "Roles: " + strings.Join(roles, ", ") + ".",
			"security":    []map[string][]string{{"bearer": {}}},
			"responses": map[string]any{
				"default": map[string]any{"description": "An error", "content": map[string]any{
					"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}},
				"2XX": map[string]any{"description": "Success (JSON)"},
			},
		}
		// Bodies the route table's types describe (schema.go).
		if in, out, err := bodySchemas(r.method, r.path); err == nil {
			if in != nil {
				op["requestBody"] = map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": in}}}
			}
			if out != nil {
				op["responses"].(map[string]any)["2XX"] = map[string]any{"description": "Success",
					"content": map[string]any{"application/json": map[string]any{"schema": out}}}
			}
		}
		var params []map[string]any
		for _, m := range pathParam.FindAllStringSubmatch(r.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]string{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if _, ok := op["requestBody"]; !ok && r.method == http.MethodPost {
			op["requestBody"] = map[string]any{"required": false, "content": map[string]any{"application/json": map[string]any{"schema": map[string]string{"type": "object"}}}}
		}
		if paths["/api/v1"+path] == nil {
			paths["/api/v1"+path] = map[string]any{}
		}
		paths["/api/v1"+path][strings.ToLower(r.method)] = op
	}
	for _, r := range s.publicRoutes() {
		paths["/api/v1"+r.path] = map[string]any{strings.ToLower(r.method): map[string]any{
			"summary": r.summary, "description": "No token needed.", "security": []map[string][]string{},
			"responses": map[string]any{"200": map[string]any{"description": "Success"}},
		}}
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]string{"title": "seb, the Sovereign Execution Broker for Terraform", "version": "1"},
		"paths":   paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]string{"type": "http", "scheme": "bearer", "description": "An API token from `seb tokens create`"}},
			"schemas": map[string]any{"Error": map[string]any{
				"type": "object", "required": []string{"error"},
				"properties": map[string]any{"error": map[string]any{"type": "object", "required": []string{"code", "message"},
					"properties": map[string]any{"code": map[string]string{"type": "string"}, "message": map[string]string{"type": "string"}}}},
			}},
		},
	}
}

func (s *Server) openAPI(c echo.Context) error { return c.JSON(http.StatusOK, OpenAPI()) }

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
