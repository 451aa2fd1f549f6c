"""One module per output family: text_out (t2t, i2t, v2t, s2t), image_out (t2i, i2i), speech_out (t2s)."""
