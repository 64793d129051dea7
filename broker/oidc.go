package broker

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Where an OpenID issuer publishes its metadata and keys, relative to the
// issuer URL (OpenID Connect Discovery 1.0, section 4).
const (
	discoveryPath = "/.well-known/openid-configuration"
	jwksPath      = "/.well-known/jwks.json"
)

// publishMaxAge is how long a verifier may cache the discovery document
// and the JWKS. It is short so that a verifier which does not refresh on
// an unknown key id still picks up a rotated key within minutes.
const publishMaxAge = 5 * time.Minute

// claimsSupported lists every claim a credential carries.
var claimsSupported = []string{
	"iss", "sub", "aud", "exp", "iat", "nbf", "jti",
	"workspace", "phase", "execution_id", "certificate_id",
}

// providerMetadata is the OpenID discovery document: the subset of the
// OpenID Provider Metadata a token verifier reads, as GitHub Actions'
// issuer publishes it (no authorization endpoint: the broker mints tokens
// only for its own executions).
type providerMetadata struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	ClaimsSupported                  []string `json:"claims_supported"`
}

// JWKSURL returns the URL of the issuer's JWK Set.
func (i *Issuer) JWKSURL() string { return i.url + jwksPath }

// Handler returns the handler that publishes what verifiers need to trust
// the issuer's credentials, at the paths its URL implies when mounted at
// the server root:
//
//   - GET <path>/.well-known/openid-configuration: the OpenID discovery
//     document (issuer, jwks_uri, id_token_signing_alg_values_supported
//     ["RS256"], response_types_supported ["id_token"],
//     subject_types_supported ["public"], claims_supported);
//   - GET <path>/.well-known/jwks.json: the JWK Set of the published keys,
//     read afresh on every request, so a rotation shows at once.
//
// <path> is the path of the issuer URL, empty for an issuer at a host's
// root. Both answers are JSON and may be cached for five minutes. Other
// paths are 404; other methods on these paths 405.
func (i *Issuer) Handler() http.Handler {
	discovery, err := json.Marshal(providerMetadata{
		Issuer:                           i.url,
		JWKSURI:                          i.JWKSURL(),
		IDTokenSigningAlgValuesSupported: []string{SigningAlgorithm},
		ResponseTypesSupported:           []string{"id_token"},
		SubjectTypesSupported:            []string{"public"},
		ClaimsSupported:                  claimsSupported,
	})
	if err != nil {
		panic("broker: marshal discovery document: " + err.Error()) // a struct of strings always marshals
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+i.path+discoveryPath, func(w http.ResponseWriter, _ *http.Request) {
		writePublished(w, discovery)
	})
	mux.HandleFunc("GET "+i.path+jwksPath, func(w http.ResponseWriter, _ *http.Request) {
		jwks, err := i.keys.PublicJWKS()
		if err != nil {
			http.Error(w, "cannot publish the signing keys", http.StatusInternalServerError)
			return
		}
		writePublished(w, jwks)
	})
	return mux
}

// writePublished answers with a cacheable JSON document.
func writePublished(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(publishMaxAge/time.Second)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}
