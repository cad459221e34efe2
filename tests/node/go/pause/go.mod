// The pod sandbox ("pause") image's only binary, for the real-node tier (tests/node).
module gpu-rightsizer/node-pause

go 1.26.0
