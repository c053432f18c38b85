module github.com/routerscope/routerscope

go 1.26.0

require gopkg.in/yaml.v3 v3.0.1

require (
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
)
