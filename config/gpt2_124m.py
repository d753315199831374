# GPT-2 small (124M parameters) as nanoGPT's train.py defaults it: 12 layers, 12 heads, 768 wide, context
# 1024, GPT-2 BPE; here on Tiny Shakespeare (nanoGPT's own default corpus, OpenWebText, is not packaged).
# A GPU preset: about 0.5 s per step of 12 x 1024 tokens on one A100-class GPU (not measured here).
# python train.py config/gpt2_124m.py

out_dir = "out/gpt2_124m"
dataset = "shakespeare"
tokenizer = "gpt2"

block_size = 1024
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
bias = False
pos_enc = "learned"  # GPT-2's; every preset takes --pos_enc=...

batch_size = 12
gradient_accumulation_steps = 5 * 8
max_iters = 5000
lr_decay_iters = 5000
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 200
beta2 = 0.95
weight_decay = 0.1
grad_clip = 1.0

eval_interval = 250
eval_iters = 200
log_interval = 10
