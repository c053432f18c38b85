module github.com/routerscope/routerscope

go 1.26.0

require golang.org/x/arch v0.33.0

require gopkg.in/yaml.v3 v3.0.1
