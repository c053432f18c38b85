/* Registers of Go's internal ABI in a uprobe's pt_regs, per architecture.
 *
 * GO_ARG(ctx, i) is the i-th integer argument or result register (i < 9:
 * the probes.Reg values RegRAX..RegR11), GO_SP the stack pointer and GO_G
 * the register holding the current goroutine's g.
 *
 * amd64 (cmd/compile/abi-internal.md): RAX, RBX, RCX, RDI, RSI, R8-R11;
 * g in R14.
 * arm64: R0-R15 carry arguments (the first nine are read); g in R28. The
 * uprobe context starts with struct user_pt_regs (uapi asm/ptrace.h:
 * regs[31], sp, pc, pstate), whose layout is fixed, so it is read at fixed
 * offsets rather than through the x86 struct pt_regs of vmlinux.h.
 */
#pragma once

#if defined(__TARGET_ARCH_arm64)

struct go_arm64_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};

#define GO_ARG(ctx, i) (((struct go_arm64_regs *)(ctx))->regs[i])
#define GO_SP(ctx) (((struct go_arm64_regs *)(ctx))->sp)
#define GO_G(ctx) (((struct go_arm64_regs *)(ctx))->regs[28])

#else /* amd64 */

static __always_inline __u64 go_arg_amd64(struct pt_regs *ctx, int i)
{
	switch (i) {
	case 0: return ctx->ax;
	case 1: return ctx->bx;
	case 2: return ctx->cx;
	case 3: return ctx->di;
	case 4: return ctx->si;
	case 5: return ctx->r8;
	case 6: return ctx->r9;
	case 7: return ctx->r10;
	default: return ctx->r11;
	}
}

#define GO_ARG(ctx, i) go_arg_amd64((ctx), (i))
#define GO_SP(ctx) ((ctx)->sp)
#define GO_G(ctx) ((ctx)->r14)

#endif
