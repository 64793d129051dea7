package drift

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
)

var (
	topLevelSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "terraform"},
		{Type: "resource", LabelNames: []string{"type", "name"}},
		{Type: "data", LabelNames: []string{"type", "name"}},
	}}
	terraformSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "backend", LabelNames: []string{"type"}},
		{Type: "cloud"},
	}}
	resourceSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "provisioner", LabelNames: []string{"type"}},
	}}
)

// checkHCL refuses two things a configuration must not declare, in any of
// its modules:
//   - a backend or cloud block in the root module: the broker owns the
//     workspace's state, and a backend would send it elsewhere;
//   - provisioners: they run arbitrary commands on the broker's machine at
//     apply time, and nothing of them is in the plan a reviewer certifies.
//
// Files that do not parse are left for Terraform to report.
func checkHCL(dir string) error {
	parser := hclparse.NewParser()
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		var file *hcl.File
		var diags hcl.Diagnostics
		switch name := d.Name(); {
		case strings.HasSuffix(name, ".tf"):
			file, diags = parser.ParseHCLFile(path)
		case strings.HasSuffix(name, ".tf.json"):
			file, diags = parser.ParseJSONFile(path)
		default:
			return nil
		}
		if diags.HasErrors() || file == nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		root := filepath.Dir(rel) == "."
		content, _, _ := file.Body.PartialContent(topLevelSchema)
		for _, block := range content.Blocks {
			switch block.Type {
			case "terraform":
				if !root {
					continue
				}
				inner, _, _ := block.Body.PartialContent(terraformSchema)
				for _, b := range inner.Blocks {
					what := "a cloud block"
					if b.Type == "backend" {
						what = fmt.Sprintf("backend %q", b.Labels[0])
					}
					return fmt.Errorf("configuration: %s declares %s (line %d); the broker keeps each workspace's state, so a bundle cannot send it elsewhere",
						rel, what, b.DefRange.Start.Line)
				}
			default:
				inner, _, _ := block.Body.PartialContent(resourceSchema)
				for _, b := range inner.Blocks {
					return fmt.Errorf("configuration: %s: %s.%s has a %q provisioner (line %d); provisioners run commands on the broker at apply time and are not part of the certified diff",
						rel, block.Labels[0], block.Labels[1], b.Labels[0], b.DefRange.Start.Line)
				}
			}
		}
		return nil
	})
}
