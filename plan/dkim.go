package plan

// DKIM rotation step actions (DKIMStep.Action).
const (
	// DKIMRotate generates a new selector's keys on the server, pending.
	DKIMRotate = "rotate"
	// DKIMActivate switches signing to the pending selector once every
	// authoritative name server serves its records.
	DKIMActivate = "activate"
	// DKIMRemove deletes a retired selector's keys on the server, after
	// its records were deleted from DNS.
	DKIMRemove = "remove"
)

// DKIMStep is one step of a domain's DKIM rotation.
type DKIMStep struct {
	Action string `json:"action"`
	// Selector is the base selector the step acts on (its keys are
	// published as SELECTOR-ed25519 and SELECTOR-rsa).
	Selector string `json:"selector"`
	// From is, for DKIMActivate, the selector that signed until then.
	From string `json:"from,omitempty"`
}
