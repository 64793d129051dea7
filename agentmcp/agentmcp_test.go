package agentmcp

import (
	"strconv"
	"strings"
	"testing"
)

// TestCheckFiles: what an agent sends is held to seb's bundle limits
// before anything is written: a path a million directories deep, too many
// files, a file too large, a path outside the configuration.
func TestCheckFiles(t *testing.T) {
	many := map[string]string{}
	for i := range 10_001 {
		many[strings.Repeat("d/", i%3)+"f"+strings.Repeat("x", i%7)+strconv.Itoa(i)+".tf"] = ""
	}
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"none", nil, "no files"},
		{"deep", map[string]string{strings.Repeat("a/", 1_000_000) + "x.tf": ""}, "longer than"},
		{"deep but short", map[string]string{strings.Repeat("a/", 40) + "x.tf": ""}, "deeper than 32"},
		{"many", many, "more than the 10000"},
		{"large", map[string]string{"main.tf": strings.Repeat("#", 64<<20+1)}, "larger than"},
		{"outside", map[string]string{"../main.tf": ""}, "not a path inside"},
		{"absolute", map[string]string{"/etc/main.tf": ""}, "not a path inside"},
		{"backslash", map[string]string{`..\main.tf`: ""}, "not a path inside"},
	} {
		if err := checkFiles(tt.files); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want an error saying %q", tt.name, err, tt.want)
		}
	}
	if err := checkFiles(map[string]string{"main.tf": "x", "modules/a/main.tf": "y"}); err != nil {
		t.Errorf("a fine configuration: %v", err)
	}
}
