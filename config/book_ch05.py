# Raschka, "Build a Large Language Model (From Scratch)", chapter 5: pretraining the book's GPT-124M on The
# Verdict (ch05/01_main-chapter-code/ch05.ipynb and gpt_train.py of rasbt/LLMs-from-scratch).
# python train.py config/book_ch05.py                     # the book's run
# python train.py config/book_ch05.py --pos_enc=rope --out_dir=out/book_ch05_rope
# python train.py config/book_ch05.py --init=gpt2 --gelu=exact --batch_order=random   # nanorope's defaults
# What differs from the book and what it does to the numbers: README "Following the book".

out_dir = "out/book_ch05"
dataset = "verdict"  # 20,479 characters; GPT-2 BPE: 4,612 train / 534 val tokens (the book's 90/10 split)
tokenizer = "gpt2"

# GPT_CONFIG_124M: 12 layers, 12 heads, 768 wide, context 256, dropout 0.1, qkv_bias False
block_size = 256
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.1
bias = True  # the book: biases everywhere but on q, k, v (we have one switch: q, k, v get biases too)
tie_embeddings = False  # the book's out_head is its own matrix (163M parameters, not 124M)
pos_enc = "learned"
init = "torch"  # the book keeps PyTorch's default inits (embeddings N(0, 1)); nanorope's default is GPT-2's
gelu = "tanh"  # the book's GELU is the tanh approximation
batch_order = "epochs"  # DataLoader(stride=256, shuffle=True, drop_last=True): 9 batches per epoch

# torch.optim.AdamW(lr=4e-4, weight_decay=0.1), constant lr, no clipping; 10 epochs of 9 batches of 2
batch_size = 2
gradient_accumulation_steps = 1
max_iters = 90  # the notebook logs every 5th step, the last at step 85
learning_rate = 4e-4
min_lr = 4e-4
warmup_iters = 0
lr_decay_iters = 90
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.999
grad_clip = 0.0

eval_interval = 5  # eval_freq=5
eval_iters = 5  # eval_iter=5 batches
log_interval = 5
seed = 123  # torch.manual_seed(123)
sample_tokens = 50
