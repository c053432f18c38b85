module github.com/routerscope/routerscope

go 1.26.0
