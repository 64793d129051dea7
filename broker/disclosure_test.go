package broker_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/seb-broker/seb/broker"
)

// bundleWith packs the scale fixture with main.tf's image line replaced.
func bundleWith(t *testing.T, image string) []byte {
	t.Helper()
	return bundleVariant(t, func(dir string) error {
		return editFile(dir, "main.tf", func(main []byte) []byte {
			main = bytes.Replace(main, []byte("image    = var.image"), []byte("image    = "+image), 1)
			return append(main, []byte("\nresource \"terraform_data\" \"seed\" {\n  input = \"x\"\n}\n")...)
		})
	})
}

// TestHiddenValuesRefused: an agent wraps the image in sensitive(), so
// that reviewers would approve a digest of a value nobody sees. The
// provider does not consider an image secret: refused, naming it.
func TestHiddenValuesRefused(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, nil)
	_, _, err := w.svc.Propose(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1",
		Bundle: bundleWith(t, `sensitive("evil/cryptominer:latest")`)})
	if broker.ErrorCode(err) != broker.EINVALID || !strings.Contains(broker.ErrorMessage(err), "sandbox_service.web image is hidden by the configuration") {
		t.Fatalf("a hidden image: %v", err)
	}
}

// TestDisclosure: with hidden values allowed, the proposal says what
// reviewers cannot read and where it comes from.
func TestDisclosure(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, func(ws *broker.Workspace) { ws.AllowHiddenValues = true })
	p, _, err := w.svc.Propose(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1",
		Bundle: bundleWith(t, `sensitive("evil/cryptominer:latest")`)})
	if err != nil {
		t.Fatal(err)
	}
	d := p.Disclosure
	if d == nil || len(d.Hidden) != 1 || d.Hidden[0].Address != "sandbox_service.web" || d.Hidden[0].Path != "image" || d.Hidden[0].By != "configuration" {
		t.Fatalf("hidden: %+v", d)
	}
	unknown := map[string][]string{}
	for _, u := range d.Unknown {
		unknown[u.Address+" "+u.Path] = u.References
	}
	if refs, ok := unknown["sandbox_service.web id"]; !ok || len(refs) != 0 {
		t.Errorf("the service's id: %v, %v; want known after apply, computed by the provider (all: %+v)", refs, ok, d.Unknown)
	}

	// A value made unknown at plan time names what it comes from.
	p, _, err = w.svc.Propose(ctx, broker.ProposalRequest{Workspace: "sandbox", Proposer: "agent-1",
		Bundle: bundleWith(t, `"nginx:${terraform_data.seed.id}"`)})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := w.store.Proposal(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	var image []string
	for _, u := range stored.Disclosure.Unknown {
		if u.Address == "sandbox_service.web" && u.Path == "image" {
			image = u.References
		}
	}
	if len(image) == 0 || image[0] != "terraform_data.seed.id" {
		t.Errorf("the image's references: %v (all: %+v)", image, stored.Disclosure.Unknown)
	}
}
