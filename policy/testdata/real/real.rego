# A platform team's policy for cloud plans, exercised against real plans
# other projects wrote (../shared/plans).
package seb

import rego.v1

# Nothing is deleted by an agent.
deny contains msg if {
	some r in input.summary.resources
	r.action in {"delete", "replace"}
	msg := sprintf("%s would be %sd", [r.address, r.action])
}

# Anything open to the whole internet is shown to reviewers.
warn contains msg if {
	some r in input.summary.resources
	some path, v in r.after
	open_to_all(v)
	msg := sprintf("%s.%s opens to 0.0.0.0/0", [r.address, path])
}

# Anywhere inside the value: a list of rules, an object of settings.
open_to_all(v) if {
	walk(v, [_, x])
	x == "0.0.0.0/0"
}

# Identity changes need two approvals from security.
approvals := {"count": 2, "groups": ["security"]} if {
	some r in input.summary.resources
	regex.match(`(^|_)(iam|identity)(_|$)`, r.type)
}

# Changing only tags needs no human.
auto_certify if {
	count(input.summary.resources) > 0
	every r in input.summary.resources {
		r.action == "update"
		every path, _ in r.after {
			startswith(path, "tags")
		}
	}
}
