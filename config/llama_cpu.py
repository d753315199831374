# The book's GPT-to-Llama step at nanoGPT's baby CPU size (config/shakespeare_char_cpu.py): RMSNorm, a
# SwiGLU MLP (hidden 512: Llama's 8C/3 rounded up to 256), no biases, untied embeddings, grouped-query
# attention with 2 key/value heads for 4 query heads, and RoPE. Compare with
# python train.py config/shakespeare_char_cpu.py --pos_enc=rope (the GPT-2 block, same data and steps).
# python train.py config/llama_cpu.py

out_dir = "out/llama_cpu"
dataset = "shakespeare"
tokenizer = "char"
device = "cpu"
compile = False

block = "llama"
pos_enc = "rope"
block_size = 64
n_layer = 4
n_head = 4
n_kv_head = 2
n_embd = 128
dropout = 0.0
bias = False
tie_embeddings = False

batch_size = 12
gradient_accumulation_steps = 1
max_iters = 2000
lr_decay_iters = 2000
learning_rate = 1e-3
min_lr = 1e-4
warmup_iters = 100
beta2 = 0.99
weight_decay = 1e-1
grad_clip = 1.0

eval_interval = 250
eval_iters = 20
log_interval = 10
