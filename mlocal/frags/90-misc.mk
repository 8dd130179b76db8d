# clean removes what `make` built; the configuration stays (re-run ./mconfig to change it).
.PHONY: clean
clean:
	rm -f $(BUILDDIR)/kerr $(BUILDDIR)/starter $(BUILDDIR)/starter-suid

# The Makefile remakes itself when mconfig or its fragments change, with the same options.
Makefile $(BUILDDIR)/Makefile: $(SRCDIR)/mconfig $(SRCDIR)/mlocal/checks.sh $(wildcard $(SRCDIR)/mlocal/frags/*.mk)
	cd $(SRCDIR) && GO=$(GO) ./mconfig $(MCONFIG_ARGS)
