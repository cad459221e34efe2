// celcheck compiles webhook matchConditions with kube-apiserver's own CEL compiler (the
// one k8s.io/kubernetes/pkg/apis/admissionregistration/validation uses when a
// MutatingWebhookConfiguration is created: validateMatchConditionsExpression) and
// evaluates them against objects, the way the webhook matcher does.
//
// stdin:  {"expressions": {"name": "cel", ...}, "objects": [<object>, ...]}
// stdout: {"compileErrors": {"name": "msg"}, "results": [{"name": true|false|"error: ..."}]}
package main

import (
	"encoding/json"
	"fmt"
	"os"

	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/matchconditions"
	"k8s.io/apiserver/pkg/cel/environment"
)

type input struct {
	Expressions map[string]string `json:"expressions"`
	Objects     []map[string]any  `json:"objects"`
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "celcheck: bad input:", err)
		os.Exit(2)
	}
	compiler := plugincel.NewCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	opts := plugincel.OptionalVariableDeclarations{HasParams: false, HasAuthorizer: true}
	compileErrors := map[string]string{}
	compiled := map[string]plugincel.CompilationResult{}
	for name, expr := range in.Expressions {
		res := compiler.CompileCELExpression(&matchconditions.MatchCondition{Name: name, Expression: expr}, opts, environment.NewExpressions)
		if res.Error != nil {
			compileErrors[name] = res.Error.Error()
			continue
		}
		compiled[name] = res
	}
	results := []map[string]any{}
	for _, obj := range in.Objects {
		row := map[string]any{}
		for name, res := range compiled {
			out, _, err := res.Program.Eval(map[string]any{"object": obj, "oldObject": nil})
			if err != nil {
				row[name] = "error: " + err.Error()
			} else {
				row[name] = out.Value()
			}
		}
		results = append(results, row)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]any{"compileErrors": compileErrors, "results": results})
}
