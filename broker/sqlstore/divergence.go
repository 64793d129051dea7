package sqlstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/seb-broker/seb/planparse"
)

// encodeDivergence returns d's JSON, having checked that decodeDivergence
// reads it back: a divergence the store accepts can always be returned.
func encodeDivergence(d *planparse.Divergence) ([]byte, error) {
	data, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	if _, err := decodeDivergence(data); err != nil {
		return nil, err
	}
	return data, nil
}

// decodeDivergence reads a divergence written by json.Marshal.
//
// planparse gives Divergence no UnmarshalJSON, and encoding/json alone
// would decode its values into float64s and plain maps that planparse
// cannot encode again (markers for unknown and sensitive values, integer
// path steps). So every part holding planparse values is decoded by
// planparse's own validating decoder, Summary.UnmarshalJSON, wrapped in a
// minimal summary. Values in FieldDivergence keep their JSON but may
// change Go type (an int path step in replace_paths comes back as a
// json.Number).
func decodeDivergence(data []byte) (*planparse.Divergence, error) {
	type attributeJSON struct {
		Path      json.RawMessage `json:"path"`
		Certified json.RawMessage `json:"certified"`
		Live      json.RawMessage `json:"live"`
	}
	var raw struct {
		CertifiedDigest string          `json:"certified_digest"`
		LiveDigest      string          `json:"live_digest"`
		OnlyCertified   json.RawMessage `json:"only_certified"`
		OnlyLive        json.RawMessage `json:"only_live"`
		Resources       []struct {
			Address string `json:"address"`
			Deposed string `json:"deposed"`
			Fields  []struct {
				Field     string          `json:"field"`
				Certified json.RawMessage `json:"certified"`
				Live      json.RawMessage `json:"live"`
			} `json:"fields"`
			Attributes []attributeJSON `json:"attributes"`
		} `json:"resources"`
		Outputs []struct {
			Name      string          `json:"name"`
			Certified json.RawMessage `json:"certified"`
			Live      json.RawMessage `json:"live"`
		} `json:"outputs"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("divergence: %v", err)
	}
	d := &planparse.Divergence{CertifiedDigest: raw.CertifiedDigest, LiveDigest: raw.LiveDigest}
	var err error
	if d.OnlyCertified, err = decodeResources(raw.OnlyCertified); err != nil {
		return nil, fmt.Errorf("divergence: only_certified: %v", err)
	}
	if d.OnlyLive, err = decodeResources(raw.OnlyLive); err != nil {
		return nil, fmt.Errorf("divergence: only_live: %v", err)
	}
	for _, r := range raw.Resources {
		rd := planparse.ResourceDivergence{Address: r.Address, Deposed: r.Deposed}
		for _, f := range r.Fields {
			fd := planparse.FieldDivergence{Field: f.Field}
			if fd.Certified, err = decodeValue(f.Certified); err != nil {
				return nil, fmt.Errorf("divergence: %s: %s: %v", r.Address, f.Field, err)
			}
			if fd.Live, err = decodeValue(f.Live); err != nil {
				return nil, fmt.Errorf("divergence: %s: %s: %v", r.Address, f.Field, err)
			}
			rd.Fields = append(rd.Fields, fd)
		}
		for _, a := range r.Attributes {
			var ad planparse.AttributeDivergence
			if ad.Path, err = decodePath(a.Path); err != nil {
				return nil, fmt.Errorf("divergence: %s: %v", r.Address, err)
			}
			if ad.Certified, err = decodeAttribute(a.Certified); err != nil {
				return nil, fmt.Errorf("divergence: %s: %s: %v", r.Address, ad.Path, err)
			}
			if ad.Live, err = decodeAttribute(a.Live); err != nil {
				return nil, fmt.Errorf("divergence: %s: %s: %v", r.Address, ad.Path, err)
			}
			rd.Attributes = append(rd.Attributes, ad)
		}
		d.Resources = append(d.Resources, rd)
	}
	for _, o := range raw.Outputs {
		od := planparse.OutputDivergence{Name: o.Name}
		if od.Certified, err = decodeOutput(o.Certified); err != nil {
			return nil, fmt.Errorf("divergence: output %s: %v", o.Name, err)
		}
		if od.Live, err = decodeOutput(o.Live); err != nil {
			return nil, fmt.Errorf("divergence: output %s: %v", o.Name, err)
		}
		d.Outputs = append(d.Outputs, od)
	}
	return d, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// decodeSummary decodes a summary made of the given resources and outputs
// (JSON arrays).
func decodeSummary(resources, outputs string) (*planparse.Summary, error) {
	doc := `{"version":` + strconv.Itoa(planparse.SummaryVersion) + `,"resources":` + resources + `,"outputs":` + outputs + `}`
	var s planparse.Summary
	if err := json.Unmarshal([]byte(doc), &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// decodeResources decodes a list of resource changes; nil for null.
func decodeResources(raw json.RawMessage) ([]planparse.ResourceChange, error) {
	if isNull(raw) {
		return nil, nil
	}
	s, err := decodeSummary(string(raw), "[]")
	if err != nil {
		return nil, err
	}
	return s.Resources, nil
}

// placeholder is a resource change that carries one attribute change.
const placeholder = `{"address":"x","mode":"managed","type":"x","name":"x","provider":"x","action":"update","changes":[`

// decodeAttribute decodes an attribute change; nil for null.
func decodeAttribute(raw json.RawMessage) (*planparse.AttributeChange, error) {
	if isNull(raw) {
		return nil, nil
	}
	s, err := decodeSummary("["+placeholder+string(raw)+"]}]", "[]")
	if err != nil {
		return nil, err
	}
	return &s.Resources[0].Changes[0], nil
}

// decodePath decodes an attribute path.
func decodePath(raw json.RawMessage) (planparse.Path, error) {
	c, err := decodeAttribute(json.RawMessage(`{"path":` + string(raw) + `,"before":null,"after":null}`))
	if err != nil {
		return nil, err
	}
	return c.Path, nil
}

// decodeOutput decodes an output change; nil for null.
func decodeOutput(raw json.RawMessage) (*planparse.OutputChange, error) {
	if isNull(raw) {
		return nil, nil
	}
	s, err := decodeSummary("[]", "["+string(raw)+"]")
	if err != nil {
		return nil, err
	}
	return &s.Outputs[0], nil
}

// decodeValue decodes one planparse value (nil for null).
func decodeValue(raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	o, err := decodeOutput(json.RawMessage(`{"name":"x","action":"update","before":` + string(raw) + `,"after":null}`))
	if err != nil {
		return nil, err
	}
	return o.Before, nil
}
