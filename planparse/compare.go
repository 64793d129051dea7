package planparse

// A Divergence is the structured difference between a certified summary and
// a live one: what a reviewer reads when an execution is refused. It is empty
// exactly when the two digests are equal.
type Divergence struct {
	CertifiedDigest string `json:"certified_digest"`
	LiveDigest      string `json:"live_digest"`
	// OnlyCertified lists resources the certified summary changes and the
	// live plan does not; OnlyLive the reverse.
	OnlyCertified []ResourceChange     `json:"only_certified,omitempty"`
	OnlyLive      []ResourceChange     `json:"only_live,omitempty"`
	Resources     []ResourceDivergence `json:"resources,omitempty"`
	Outputs       []OutputDivergence   `json:"outputs,omitempty"`
}

// Empty reports whether the summaries agree.
func (d *Divergence) Empty() bool {
	return d.CertifiedDigest == d.LiveDigest
}

// A ResourceDivergence is a resource both summaries change, differently.
type ResourceDivergence struct {
	Address string `json:"address"`
	Deposed string `json:"deposed,omitempty"`
	// Fields lists differences outside the attributes: action, replace
	// order, action reason, provider, replace paths and the like.
	Fields     []FieldDivergence     `json:"fields,omitempty"`
	Attributes []AttributeDivergence `json:"attributes,omitempty"`
}

// A FieldDivergence is one resource field whose value differs.
type FieldDivergence struct {
	Field     string `json:"field"`
	Certified any    `json:"certified"`
	Live      any    `json:"live"`
}

// An AttributeDivergence is one attribute whose change differs. Certified or
// Live is nil when only the other summary changes the attribute.
type AttributeDivergence struct {
	Path      Path             `json:"path"`
	Certified *AttributeChange `json:"certified"`
	Live      *AttributeChange `json:"live"`
}

// An OutputDivergence is an output whose change differs; Certified or Live is
// nil when only the other summary changes it.
type OutputDivergence struct {
	Name      string        `json:"name"`
	Certified *OutputChange `json:"certified"`
	Live      *OutputChange `json:"live"`
}

// Compare returns how live differs from certified. When their digests are
// equal the divergence is empty; otherwise it names every resource only in
// one, every differing field and attribute with both values, and every
// differing output.
func Compare(certified, live *Summary) *Divergence {
	d := &Divergence{CertifiedDigest: certified.Digest(), LiveDigest: live.Digest()}
	if d.Empty() {
		return d
	}
	c, l := certified.Resources, live.Resources
	for len(c) > 0 || len(l) > 0 {
		switch {
		case len(l) == 0 || (len(c) > 0 && resourceLess(&c[0], &l[0])):
			d.OnlyCertified = append(d.OnlyCertified, c[0])
			c = c[1:]
		case len(c) == 0 || resourceLess(&l[0], &c[0]):
			d.OnlyLive = append(d.OnlyLive, l[0])
			l = l[1:]
		default:
			if rd, differ := compareResource(&c[0], &l[0]); differ {
				d.Resources = append(d.Resources, rd)
			}
			c, l = c[1:], l[1:]
		}
	}
	co, lo := certified.Outputs, live.Outputs
	for len(co) > 0 || len(lo) > 0 {
		switch {
		case len(lo) == 0 || (len(co) > 0 && lessUTF16(co[0].Name, lo[0].Name)):
			d.Outputs = append(d.Outputs, OutputDivergence{Name: co[0].Name, Certified: &co[0]})
			co = co[1:]
		case len(co) == 0 || lessUTF16(lo[0].Name, co[0].Name):
			d.Outputs = append(d.Outputs, OutputDivergence{Name: lo[0].Name, Live: &lo[0]})
			lo = lo[1:]
		default:
			if co[0].Action != lo[0].Action || !equalValues(co[0].Before, lo[0].Before) || !equalValues(co[0].After, lo[0].After) {
				d.Outputs = append(d.Outputs, OutputDivergence{Name: co[0].Name, Certified: &co[0], Live: &lo[0]})
			}
			co, lo = co[1:], lo[1:]
		}
	}
	return d
}

func compareResource(c, l *ResourceChange) (ResourceDivergence, bool) {
	rd := ResourceDivergence{Address: c.Address, Deposed: c.Deposed}
	field := func(name string, cv, lv any) {
		if !equalValues(cv, lv) {
			rd.Fields = append(rd.Fields, FieldDivergence{Field: name, Certified: cv, Live: lv})
		}
	}
	field("action", string(c.Action), string(l.Action))
	field("replace_order", string(c.ReplaceOrder), string(l.ReplaceOrder))
	field("action_reason", c.ActionReason, l.ActionReason)
	field("mode", c.Mode, l.Mode)
	field("type", c.Type, l.Type)
	field("name", c.Name, l.Name)
	field("index", c.Index, l.Index)
	field("module_address", c.ModuleAddress, l.ModuleAddress)
	field("previous_address", c.PreviousAddress, l.PreviousAddress)
	field("provider", c.Provider, l.Provider)
	field("importing", importValue(c.Importing), importValue(l.Importing))
	field("replace_paths", pathsValue(c.ReplacePaths), pathsValue(l.ReplacePaths))

	cc, lc := c.Changes, l.Changes
	for len(cc) > 0 || len(lc) > 0 {
		switch {
		case len(lc) == 0 || (len(cc) > 0 && comparePaths(cc[0].Path, lc[0].Path) < 0):
			rd.Attributes = append(rd.Attributes, AttributeDivergence{Path: cc[0].Path, Certified: &cc[0]})
			cc = cc[1:]
		case len(cc) == 0 || comparePaths(lc[0].Path, cc[0].Path) < 0:
			rd.Attributes = append(rd.Attributes, AttributeDivergence{Path: lc[0].Path, Live: &lc[0]})
			lc = lc[1:]
		default:
			if !equalValues(cc[0].Before, lc[0].Before) || !equalValues(cc[0].After, lc[0].After) {
				rd.Attributes = append(rd.Attributes, AttributeDivergence{Path: cc[0].Path, Certified: &cc[0], Live: &lc[0]})
			}
			cc, lc = cc[1:], lc[1:]
		}
	}
	return rd, len(rd.Fields) > 0 || len(rd.Attributes) > 0
}

func importValue(im *Import) any {
	if im == nil {
		return nil
	}
	return Object{{Name: "id", Value: im.ID}, {Name: "identity", Value: im.Identity}}
}

func pathsValue(ps []Path) any {
	if len(ps) == 0 {
		return nil
	}
	out := make([]any, len(ps))
	for i, p := range ps {
		out[i] = []any(p)
	}
	return out
}
